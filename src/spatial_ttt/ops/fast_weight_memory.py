"""The fast-weight memory of one TTT layer: weights, momentum and pending update inputs, and the one chunk loop.

Prefill (a whole prompt), stream pieces (any number of tokens) and decode steps (one token) are all
:meth:`FastWeightMemory.advance`; the spec's rules (spec/official-model.md, steps 8 and "Inference path") live
here and nowhere else:

* chunks of C tokens are counted from the first token; each token is answered by the weights updated on every
  complete chunk before its own (the pending tokens left by the previous call open the current chunk); under
  autograd runs of G whole chunks go to the kernel in one call (:meth:`FastWeightKernel.steps`, the same steps);
* last-chunk rule: a complete chunk updates the weights only once a token follows it, so a prompt split into
  pieces gives the same outputs and weights as the whole prompt;
* decode rule (the reference's token-by-token decode, entered with :meth:`begin_decode`): the last C tokens seen
  become pending again (even those already used in an update); each decoded token is answered, then joins the
  pending tokens, and as soon as C are pending the first C update the weights. So the first decoded token is
  answered by the prompt's weights and then triggers an update on the prompt's last C tokens.

When the first C pending tokens update the weights, under either rule, is :meth:`FastWeightMemory.due` alone: the
static decoder (:mod:`spatial_ttt.static_decode`), which answers a token inside a CUDA graph and updates between
tokens, asks it too.

The memory owns compact tensors only: ``recent`` is a copy of the last C tokens' update inputs, never a view
that would keep a whole prompt's keys alive, in the dtypes the branch made them (keys in bf16 in the bf16 mode:
:func:`~spatial_ttt.ops.fast_weight.row_dtype`). Tensors are replaced, never written in place, so a shallow copy
(``dataclasses.replace``) is an independent snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .fast_weight import FastWeights, TokenStream
from .fast_weight_kernels import FastWeightKernel


def split_chunk(pending: TokenStream, chunk: int) -> tuple[TokenStream, TokenStream | None]:
    """(the first ``chunk`` of ``pending`` tokens, the rest or None). A whole chunk comes back as it is: slicing it
    twice was a third of the chunk loop's host time per chunk (benchmarks/chunk_loop_host.py)."""
    if pending.length == chunk:
        return pending, None
    return pending.slice(0, chunk), pending.slice(chunk)


@dataclass
class FastWeightMemory:
    """``weights``: W0/W1/W2 [BH, ...] (fp32), their row norms and the momentum dW_prev. ``recent``: the update
    inputs of the last min(C, tokens seen) tokens; its trailing ``pending`` tokens have not been used in an update."""

    weights: FastWeights
    recent: TokenStream | None = None
    pending: int = 0

    def begin_decode(self) -> None:
        """Enters the reference's decode rule: the last C tokens count as pending again. Afterwards pass
        ``decoding=True`` to :meth:`advance` (the model state carries that flag)."""
        self.pending = 0 if self.recent is None else self.recent.length

    @staticmethod
    def due(pending: int, chunk: int, decoding: bool, followed: bool) -> bool:
        """Whether the first ``chunk`` of ``pending`` tokens update the weights now: once a token follows them
        (the last-chunk rule), or, under the decode rule, as soon as they are pending (the token that completed
        them has been answered by the weights before the update)."""
        return pending >= chunk and (decoding or followed)

    def advance(self, q: Tensor, tokens: TokenStream, kernel: FastWeightKernel, decoding: bool = False) -> Tensor:
        """Answers the queries q [BH, N, d] of N new tokens and takes in their update inputs ``tokens``;
        returns the answers [BH, N, d] (fp32). ``decoding``: the decode rule is in force."""
        with kernel.lock:  # the steps are transient: their weights stay in the kernel's buffers until settled
            return self._advance(q, tokens, kernel, decoding)

    def _advance(self, q: Tensor, tokens: TokenStream, kernel: FastWeightKernel, decoding: bool) -> Tensor:
        chunk, n = kernel.chunk_size, tokens.length
        weights = self.weights
        pending = self.recent.slice(self.recent.length - self.pending) if self.pending else None
        out = q.new_empty(q.shape, dtype=torch.float32)
        # a chunk completed by the previous call, now followed by a token (under the decode rule it waits until
        # the next token has been answered)
        if pending is not None and not decoding and self.due(pending.length, chunk, decoding=False, followed=n > 0):
            first, pending = split_chunk(pending, chunk)
            _, weights = kernel.step(weights, None, first, transient=True)
        group = kernel.chunks_per_call(weights, q, tokens) * chunk
        i = 0
        while i < n:
            held = 0 if pending is None else pending.length
            last = i + group - chunk  # where a group of whole chunks from i would start its last chunk
            if group > chunk and not held and self.due(n - last, chunk, decoding, followed=last + chunk < n):
                # G whole chunks, each due as the steps below would find it: one call of the kernel for all of them
                run, i = slice(i, i + group), i + group
                out[:, run], weights = kernel.steps(weights, q[:, run], tokens.slice(run.start, run.stop))
                continue
            take = min(max(chunk - held, 1), n - i)  # fill the chunk; a decoded token is answered before a flush
            pending = TokenStream.cat([pending, tokens.slice(i, i + take)])
            run, i = slice(i, i + take), i + take
            if self.due(pending.length, chunk, decoding, followed=i < n):
                first, pending = split_chunk(pending, chunk)
                out[:, run], weights = kernel.step(weights, q[:, run], first, transient=True)
            else:
                out[:, run], _ = kernel.step(weights, q[:, run], None)
        self.weights = kernel.settle(weights)
        self.pending = 0 if pending is None else pending.length
        self._remember(tokens, chunk)
        return out

    def _remember(self, tokens: TokenStream, chunk: int) -> None:
        """Keeps a compact copy of the last C tokens' update inputs."""
        if tokens.length >= chunk or self.recent is None:
            if tokens.length:
                self.recent = tokens.slice(max(tokens.length - chunk, 0)).clone()
        elif tokens.length:  # a fresh, compact concatenation
            older = self.recent.slice(max(self.recent.length + tokens.length - chunk, 0))
            self.recent = TokenStream(*(None if a is None else torch.cat([a, b], dim=1) for a, b in zip(older, tokens)))
