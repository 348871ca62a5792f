"""Interchangeable kernels of the fast-weight chunk step, chosen by ``config.ttt_kernel``.

Every kernel implements :func:`spatial_ttt.ops.fast_weight.chunk_step` (answer a run of queries, then update on
a chunk of C tokens) with the same signature, like flash-linear-attention's naive / chunk / fused variants:

* "reference": the plain PyTorch functions (CPU or GPU, differentiable): the source of truth;
* "compiled":  the same step through ``torch.compile`` (elementwise work fused around the products;
  differentiable, so training uses it on CUDA);
* "graphed":   the compiled step captured in a CUDA graph over static buffers, replayed per chunk (inference:
  a chunk is ~0.1-0.3 ms of GPU work at the released shapes, so launching ~40 kernels from Python per chunk
  would dominate). On CPU the same buffers run eagerly, uncaptured (so their bookkeeping is testable). The step
  writes the new weights and momentum back into its input buffers, so within one :meth:`FastWeightMemory.advance`
  the weights stay resident there from chunk to chunk (``transient`` steps: no copy in, no copy out; session 16
  measured the graphed step at 0.21 ms a chunk and the copies around it at as much again).
* "auto": graphed on CUDA without autograd, compiled on CUDA with autograd, reference on CPU.

Stages around the operator follow the same choice (:meth:`FastWeightKernel.fused`): the spatial conv's stencil
runs as a Triton kernel (:mod:`.conv_triton`) where the graphed kernel runs on CUDA.

Only fixed-shape work goes through the compiled / graphed kernels (a chunk's update, or a full chunk of queries
plus its update); runs of other lengths are answered by the reference apply (a few products, no recompiles).

Under autograd (training) the chunk loop hands a kernel G consecutive full chunks at a time
(:meth:`FastWeightKernel.steps`, G = ``config.ttt_train_chunks_per_call``): the compiled kernel runs the G steps
unrolled in one compiled call (one autograd node), the others one step after another. Host time per compiled
call (guards, the autograd node, a wrapper launching ~40 kernels per chunk) was ~2.7 ms per chunk on an H100, most
of a small model's training step (benchmarks/EVIDENCE.md, study 4); a group pays the per-call part once.

A :class:`FastWeightKernel` belongs to one model (its TTT layers share it): compiled callables and CUDA graphs
live in it, not in the process, so two models never share buffers, and a lock keeps threads from interleaving
replays. The precision (``config.fast_weight_precision``) is an argument of the step, so every kernel honours it.
"""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace
from typing import Callable

import torch
from torch import Tensor

from .compiled import Compiled
from .fast_weight import FastWeights, TokenStream, chunk_step, swiglu_apply

KERNELS = ("auto", "reference", "compiled", "graphed")


def flat_step(
    w0: Tensor, w1: Tensor, w2: Tensor, n0: Tensor, n1: Tensor, n2: Tensor, m0: Tensor, m1: Tensor, m2: Tensor,
    q: Tensor | None, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor, mom: Tensor | None,
    use_muon: bool, precision: str,
) -> tuple[Tensor, ...]:
    """chunk_step on plain tensors (what compilation and graph capture see). The momentum always exists here:
    zeros before the first update, which adds exactly nothing."""
    weights = FastWeights(w0, w1, w2, (n0, n1, n2), (m0, m1, m2))
    out, new = chunk_step(weights, q, TokenStream(k, v, lr0, lr1, lr2, mom), use_muon, precision)
    momentum = new.momentum if mom is not None else (m0, m1, m2)
    return (out, new.w0, new.w1, new.w2, *momentum) if q is not None else (new.w0, new.w1, new.w2, *momentum)


def flat_steps(
    w0: Tensor, w1: Tensor, w2: Tensor, n0: Tensor, n1: Tensor, n2: Tensor, m0: Tensor, m1: Tensor, m2: Tensor,
    q: Tensor, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor, mom: Tensor | None,
    use_muon: bool, precision: str, chunks: int,
) -> tuple[Tensor, ...]:
    """``chunks`` consecutive full-chunk flat_steps (each chunk's queries answered by the weights before its
    update, then the update), unrolled in one function: rows [BH, chunks * C, ...] in, the answers [BH, chunks * C,
    d], the weights and the momentum after the last update out. One fixed shape per ``chunks``."""
    size = k.shape[1] // chunks
    state, outs = (w0, w1, w2, m0, m1, m2), []
    for j in range(chunks):
        rows = (None if t is None else t[:, j * size : (j + 1) * size] for t in (q, k, v, lr0, lr1, lr2, mom))
        out, *state = flat_step(*state[:3], n0, n1, n2, *state[3:], *rows, use_muon, precision)
        outs.append(out)
    return (torch.cat(outs, dim=1), *state)


STATE_ARGS = (0, 1, 2, 6, 7, 8)  # positions of w0, w1, w2, m0, m1, m2 among flat_step's tensor arguments
NORM_ARGS = (3, 4, 5)  # n0, n1, n2: read, never written


def resident_step(*args: object) -> tuple[Tensor, ...]:
    """flat_step that writes the new weights and momentum into its own input tensors (what a graph replays: the
    weights stay in its static buffers); returns the answers only, or nothing for an update alone."""
    res = flat_step(*args)  # type: ignore[arg-type]
    answers = res[:1] if args[9] is not None else ()
    for position, new in zip(STATE_ARGS, res[len(answers):]):
        args[position].copy_(new)  # type: ignore[union-attr]
    return answers


def flat_args(weights: FastWeights, q: Tensor | None, chunk: TokenStream) -> tuple[Tensor | None, ...]:
    """The tensor arguments of flat_step / flat_steps. The momentum always exists there: zeros before the first
    update, which adds exactly nothing."""
    momentum = weights.momentum or tuple(torch.zeros_like(w) for w in weights[:3])
    return (*weights[:3], *weights.norms, *momentum, q, *chunk)


def flat_weights(before: FastWeights, chunk: TokenStream, res: list[Tensor] | tuple[Tensor, ...]) -> FastWeights:
    """The fast weights from flat_step's / flat_steps' (w0, w1, w2, m0, m1, m2); no momentum where there was none."""
    momentum = None if before.momentum is None and chunk.momentum is None else tuple(res[3:6])
    return FastWeights(*res[:3], before.norms, momentum)  # type: ignore[arg-type]


def needs_grad(weights: FastWeights, *tensors: Tensor | None) -> bool:
    """Whether autograd records a step on these inputs (a graph records none: the compiled kernel runs instead)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (*tensors, *weights[:3]))


class ChunkGraph:
    """A step captured once as a CUDA graph over static input buffers (created outside inference mode, so that
    ``inference_mode`` and ``no_grad`` callers can both use them); a call copies the inputs in, replays and
    returns copies of the outputs. Without ``capture`` (CPU) the same buffers run the step eagerly. ``warmups``:
    runs before the capture (on a side stream): compilation and autotuning happen in the first. ``rewind``: undoes
    what a run of a step that advances its own counters in place changed, after each warm-up, so that the first
    replay runs on the inputs the warm-ups saw. ``inputs``: static input buffers to use (filled with ``example``)
    instead of new ones: graphs replayed one at a time may share them, as each call copies all of its inputs in."""

    def __init__(self, step: Callable[..., tuple[Tensor, ...]], example: list[Tensor | None], capture: bool,
                 pool: object = None, warmups: int = 2, rewind: Callable[[], None] | None = None,
                 inputs: list[Tensor | None] | None = None) -> None:
        with torch.inference_mode(False), torch.no_grad():
            if inputs is None:
                self.inputs = [None if t is None else t.detach().clone() for t in example]
            else:
                self.inputs = [None if b is None else b.copy_(t) for b, t in zip(inputs, example)]
            self.step = step
            self.graph = None
            if capture:
                device = next(t for t in example if t is not None).device
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(warmups):
                        step(*self.inputs)
                        if rewind is not None:
                            rewind()
                torch.cuda.current_stream(device).wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, pool=pool):
                    self.outputs = step(*self.inputs)

    def __call__(self, *tensors: Tensor | None, transient: bool = False) -> list[Tensor]:
        """Copies the inputs in (an input that is its buffer already is not copied), runs the step and returns its
        outputs: copies, or with ``transient`` the graph's own buffers, valid until its next replay."""
        with torch.inference_mode(False), torch.no_grad():
            for dst, src in zip(self.inputs, tensors):
                if dst is not None and src is not dst:
                    dst.copy_(src)
            if self.graph is None:
                outputs = list(self.step(*self.inputs))
                return outputs if transient else [t.clone() for t in outputs]
            self.graph.replay()
            return list(self.outputs) if transient else [t.clone() for t in self.outputs]


class FastWeightKernel:
    """Runs the chunk step as ``config.ttt_kernel`` says, at ``config.fast_weight_precision``; owns the compiled
    callables and CUDA graphs. Settings are read from the config at each call, so changing them takes effect."""

    def __init__(self, config) -> None:
        self.config = config
        self._compiled: dict[tuple, Compiled] = {}
        self._graphs: dict[tuple, ChunkGraph] = {}
        self._inputs: dict[tuple, Tensor] = {}  # static input buffers by argument and shape, shared by the graphs
        self._pool = None
        self.lock = threading.RLock()  # held by a caller of transient steps for as long as it uses their outputs

    @classmethod
    def standalone(
        cls, chunk_size: int, use_muon: bool, precision: str = "fp32", kernel: str = "reference",
        train_chunks_per_call: int = 1,
    ) -> "FastWeightKernel":
        """A kernel outside a model (operator tests and benchmarks)."""
        settings = SimpleNamespace(
            lact_chunk_size=chunk_size, use_muon=use_muon, fast_weight_precision=precision, ttt_kernel=kernel,
            ttt_train_chunks_per_call=train_chunks_per_call,
        )
        return cls(settings)

    def __deepcopy__(self, memo: dict) -> "FastWeightKernel":  # a copied model compiles and captures its own
        return FastWeightKernel(copy.deepcopy(self.config, memo))

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    @property
    def chunk_size(self) -> int:
        return self.config.lact_chunk_size

    def kind(self, t: Tensor, needs_grad: bool = False) -> str:
        """The kernel that runs for tensors like ``t``: "reference", "compiled" or "graphed"."""
        setting = self.config.ttt_kernel
        if setting == "auto":
            return "reference" if not t.is_cuda else "compiled" if needs_grad else "graphed"
        if setting == "graphed" and needs_grad:  # a graph records no autograd
            return "compiled"
        return setting

    def compiled(self, fn: Callable, variant: object = None, dynamic: bool | None = None) -> Compiled:
        """``fn`` through torch.compile, once per kernel object, ``variant`` and ``dynamic`` (torch.compile's: None
        is dynamo's automatic dynamic shapes, static until a second shape comes; True: symbolic sizes at once),
        and within that once per kind of input (:class:`.compiled.Compiled`)."""
        key = (fn, variant, dynamic)
        if key not in self._compiled:
            self._compiled[key] = Compiled(fn, dynamic)
        return self._compiled[key]

    def fused(self, fn: Callable, t: Tensor, inference: Callable | None = None) -> Callable:
        """``fn`` for elementwise stages around the operator (and the vision tower's blocks): compiled unless the
        reference kernel runs.
        ``inference``: a hand-written, forward-only kernel of ``fn``'s signature, which runs instead where the
        graphed kernel runs on CUDA (no autograd needed)."""
        training = torch.is_grad_enabled()
        kind = self.kind(t, training)
        if kind == "reference":
            return fn
        if inference is not None and self.runs_inference_kernels(t):
            return inference
        # Under autograd a stage sees a new token count every step: compile it dynamic from the first step, as an
        # uninterrupted run's graphs are after dynamo's recompile. A graph specialised to a resumed run's first
        # shape gave NaN gradients (the TTT branch's gate, on an H100; EVIDENCE.md, session 11's resume probe).
        return self.compiled(fn, dynamic=True if training else None)

    def runs_inference_kernels(self, t: Tensor) -> bool:
        """Whether hand-written, forward-only kernels run for inputs like t: where the graphed kernel runs on
        CUDA (no autograd needed)."""
        return t.is_cuda and self.kind(t, torch.is_grad_enabled()) == "graphed"

    def fused_for_inference(self, fn: Callable, t: Tensor) -> Callable:
        """``fn`` compiled where the graphed kernel runs (no autograd; on CUDA under "auto"), else ``fn`` itself:
        for a stage whose compiled form only inference wants (the decoder's norms, the attentions' rope: training
        keeps them eager).
        Inside a function being compiled as a whole (a static decode layer) ``fn`` is traced as it is."""
        if torch.compiler.is_compiling() or self.kind(t, torch.is_grad_enabled()) != "graphed":
            return fn
        return self.compiled(fn)

    def chunks_per_call(self, weights: FastWeights, q: Tensor, tokens: TokenStream) -> int:
        """How many full chunks the chunk loop hands one call of :meth:`steps`: ``config.ttt_train_chunks_per_call``
        where autograd records the steps (training), 1 otherwise (inference keeps its per-chunk CUDA graphs)."""
        return self.config.ttt_train_chunks_per_call if needs_grad(weights, q, *tokens) else 1

    def step(
        self, weights: FastWeights, q: Tensor | None, chunk: TokenStream | None, transient: bool = False
    ) -> tuple[Tensor | None, FastWeights]:
        """chunk_step (answer q, then update on ``chunk``) with the configured kernel and precision.
        ``transient``: where the graphed kernel runs, the answers and new weights (their norms too) are its static
        buffers, valid until its next step (the caller holds :attr:`lock` and copies what it keeps: :meth:`settle`);
        handed back to the next step, they are not copied in again."""
        muon, precision = self.config.use_muon, self.config.fast_weight_precision
        ref = chunk.k if chunk is not None else q
        kind = self.kind(ref, needs_grad(weights, q, *(chunk or ())))
        if kind == "reference" or chunk is None:
            return chunk_step(weights, q, chunk, muon, precision)
        out = None
        if q is not None and q.shape[1] != chunk.length:  # a run of another length: no recompile for it
            out, q = swiglu_apply(weights, q, precision), None
        args = flat_args(weights, q, chunk)
        norms = weights.norms
        if kind == "graphed":
            res, norms = self._graph(args, muon, precision, transient)
        else:
            res = self.compiled(flat_step)(*args, muon, precision)
        if q is not None:
            out, res = res[0], res[1:]
        return out, flat_weights(weights, chunk, res)._replace(norms=norms)

    def steps(self, weights: FastWeights, q: Tensor, chunks: TokenStream) -> tuple[Tensor, FastWeights]:
        """:meth:`step` on each of the G consecutive full chunks of ``chunks`` (G * C tokens, their queries q
        [BH, G * C, d]) in turn: the compiled kernel runs all G in one compiled call (:func:`flat_steps`), the
        others one step after another."""
        muon, precision, size = self.config.use_muon, self.config.fast_weight_precision, self.chunk_size
        count = chunks.length // size
        if self.kind(chunks.k, needs_grad(weights, q, *chunks)) != "compiled":
            outs = []
            for start in range(0, count * size, size):
                out, weights = self.step(weights, q[:, start : start + size], chunks.slice(start, start + size))
                outs.append(out)
            return torch.cat(outs, dim=1), weights
        args = flat_args(weights, q, chunks)
        grouped = self.compiled(flat_steps, count)  # one per count: range(chunks) unrolls
        res = grouped(*args, muon, precision, count)
        return res[0], flat_weights(weights, chunks, res[1:])

    def settle(self, weights: FastWeights) -> FastWeights:
        """``weights`` with copies of whatever lies in this kernel's static buffers (after transient steps)."""
        resident = {id(t) for t in self._inputs.values()}
        own = lambda t: t.clone() if id(t) in resident else t
        momentum = None if weights.momentum is None else tuple(map(own, weights.momentum))
        return FastWeights(*map(own, weights[:3]), tuple(map(own, weights.norms)), momentum)  # type: ignore[arg-type]

    def _graph(self, args: tuple, muon: bool, precision: str, transient: bool
               ) -> tuple[list[Tensor], tuple[Tensor, Tensor, Tensor]]:
        """The step replayed: (answers and new state as flat_step returns them, the norms). ``transient``: the
        graph's buffers themselves, the norms' too (~2,100 fewer copies in a 1024-frame prompt: three a chunk)."""
        key = (tuple(None if t is None else (t.shape, t.dtype, t.device) for t in args), muon, precision)
        capture = args[0].is_cuda
        with self.lock:
            if key not in self._graphs:
                step = self.compiled(resident_step) if capture else resident_step

                def bound(*tensors: Tensor | None) -> tuple[Tensor, ...]:
                    return step(*tensors, muon, precision)

                if capture and self._pool is None:
                    self._pool = torch.cuda.graph_pool_handle()  # one memory pool for all of this model's graphs
                inputs = [None if t is None else self._static_input(i, t) for i, t in enumerate(args)]
                # the warm-ups write into the weight buffers (which may be this call's weights): put them back
                saved = [args[i].clone() for i in STATE_ARGS]
                self._graphs[key] = ChunkGraph(
                    bound, list(args), capture, self._pool, inputs=inputs,
                    rewind=lambda: [inputs[i].copy_(t) for i, t in zip(STATE_ARGS, saved)],
                )
            graph = self._graphs[key]
            answers = graph(*args, transient=transient)
            state = [graph.inputs[i] if transient else graph.inputs[i].clone() for i in STATE_ARGS]
            norms = tuple((graph.inputs if transient else args)[i] for i in NORM_ARGS)
            return [*answers, *state], norms

    def _static_input(self, position: int, t: Tensor) -> Tensor:
        """The static buffer of argument ``position`` for tensors like ``t``. The update-only and the full-chunk
        graphs take the same weights, momentum and chunk, so they share these buffers (one set, not one per graph:
        ~55 MiB at the 2B shape); replays never overlap (the lock) and each copies all of its inputs in first."""
        key = (position, t.shape, t.dtype, t.device)
        if key not in self._inputs:
            with torch.inference_mode(False):
                self._inputs[key] = torch.empty(t.shape, dtype=t.dtype, device=t.device)
        return self._inputs[key]
