"""Decoding over static buffers: one step per token, compiled and replayed as a CUDA graph (gpt-fast's answer).

A forward per decoded token (``config.decode_kernel = "eager"``) launches thousands of small kernels from Python:
at the Qwen3-VL-2B shape that is ~100 ms/token of host overhead, where reading the weights and caches once takes a
few ms. A :class:`StaticDecoder` instead holds what one decode of a prefilled ModelState needs in static buffers,
and one step (:func:`decode_step`) answers a token over them:

* anchor layers write into and attend over the state's own KV buffer, grown first to hold the whole decode, up to
  the token's index (the buffer is shared with snapshots exactly as eager decoding shares it);
* TTT layers keep their last W keys/values in a ring (a token's slot is its index mod W), their fast weights in
  static tensors and the pending tokens' update inputs in a [BH, C + 1, ...] buffer. The step answers the token
  with the weights and appends its update inputs; the decode rule's update (:meth:`FastWeightMemory.due`: once C
  are pending) runs between steps through the model's FastWeightKernel, rarely (after the first decoded token,
  then every C tokens);
* a text token's 3D rope position is the same on all three axes: cos/sin come from a position tensor in the step;
* the token's index, pending slot and rope positions live in one device tensor that the step advances itself, so
  a token costs no copy from the host and, where no stop token is checked (``generation.decode``), no read back:
  the host can queue tokens ahead of the GPU;
* in bf16 precision the static fast weights are kept in bf16: the step's products round their operands to bf16
  anyway, so rounding the weights once per update instead of at every token gives the same bits.

On CUDA the step's layers are compiled (fullgraph, one graph per kind of layer: the 21 TTT layers of the 2B model
share one, the 7 anchor layers another, their parameters and buffers its inputs, as the vision tower's blocks share
one) and the whole step, the loop over the layers included, is captured as one CUDA graph when the decode starts;
every token is a replay. Compiling the step as one function inlined all 28 layers into one graph, whose first
compilation made a fresh process's first decoded answer wait 91-97 s on an H200 (benchmarks/RESULTS.md, session
17). The graph holds the addresses of this state's anchor buffers, so it lives as long as the decoder (one
decode); the compiled layers live in the model's :class:`StaticDecoding`. On CPU the same buffers and step run
uncompiled and uncaptured, so all of the bookkeeping is tested there. :meth:`StaticDecoder.finish` writes the state
back exactly as eager decoding would have left it, also when decoding stops early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor

from .ops.fast_weight import FastWeights, TokenStream, row_dtype
from .ops.compiled import Compiled
from .ops.fast_weight_kernels import ChunkGraph
from .ops.fast_weight_memory import FastWeightMemory
from .state import ModelState

DECODE_KERNELS = ("auto", "eager", "graphed")


class LayerBuffers(NamedTuple):
    """One layer's static buffers. Anchors: the state's KV buffer [B, H_kv, capacity, hd]; TTT layers: the window
    ring [B, H_kv, W, hd], fast weights w0/w1/w2 [BH, ...] (:meth:`StaticDecoder.weight_dtype`) and the pending
    update inputs [BH, C + 1, ...] (k in :func:`row_dtype`, the rest fp32; None without the fast-weight branch)."""

    keys: Tensor
    values: Tensor
    weights: tuple[Tensor, Tensor, Tensor] | None = None
    pending: TokenStream | None = None


def decode_layer(layer, x: Tensor, cos: Tensor, sin: Tensor, buffers: LayerBuffers, index: Tensor,
                 slot: Tensor) -> Tensor:
    """One decoder layer of the step (what is compiled: the layer is an input, so layers alike share a graph)."""
    return layer.decode_static(x, cos, sin, buffers, index, slot)


def decode_step(model, token: Tensor, where: Tensor, buffers: list[LayerBuffers],
                layer_step: Callable[..., Tensor] = decode_layer) -> Tensor:
    """Logits [B, V] after one text token per row, token [B, 1]. ``where`` [2 + B] (long, on the model's device):
    the token's absolute index, the slot of its update inputs in the pending buffers, then each row's rope
    position; the step advances all of them by one, in place, for the next token. ``layer_step``: runs a layer
    (:func:`decode_layer` or its compiled form)."""
    text = model.model.language_model
    index, slot = where[:1], where[1:2]
    x = text.embed_tokens(token)
    cos, sin = text.rotary_emb(x, where[2:, None])  # [B, 1] positions, the same on the three axes
    for layer, buffer in zip(text.layers, buffers):
        x = layer_step(layer, x, cos, sin, buffer, index, slot)
    logits = model.lm_head(text.norm(x))[:, -1]
    where.add_(1)  # inside the step (and its graph): no position goes from the host to the device per token
    return logits


class StaticDecoding:
    """What a model keeps for static decoding: its compiled layers, one :class:`~spatial_ttt.ops.compiled.Compiled`
    per kind of layer (TTT or anchor; its own, so that models never share compiled variants or recompile limits,
    and within it one copy per kind of input: batch of 1 or more, weight dtype), the buffer shapes it has been
    captured for, a lock serialising captures and replays between threads, and how the last decode ran (``last``,
    for benchmarks)."""

    def __init__(self) -> None:
        self._layers: dict[bool, Compiled] = {}
        self.captured: set[tuple] = set()
        self.lock = threading.Lock()
        self.last: dict = {}

    def __deepcopy__(self, memo: dict) -> "StaticDecoding":  # a copied model compiles its own
        return StaticDecoding()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    @staticmethod
    def kind(setting: str, device: torch.device) -> str:
        """The decode that runs for ``config.decode_kernel`` on ``device``: "eager" or "graphed"."""
        if setting not in DECODE_KERNELS:
            raise ValueError(f"decode_kernel must be one of auto/eager/graphed, not {setting!r}")
        if setting == "auto":
            return "graphed" if device.type == "cuda" else "eager"
        return setting

    def step(self, compiled: bool) -> Callable[..., Tensor]:
        """:func:`decode_step`, with its layers compiled or not."""
        return partial(decode_step, layer_step=self.compiled_layer) if compiled else decode_step

    def compiled_layer(self, layer, *args) -> Tensor:
        """:func:`decode_layer` compiled, one graph per kind of layer and of input."""
        if layer.is_ttt not in self._layers:
            self._layers[layer.is_ttt] = Compiled(decode_layer)
        return self._layers[layer.is_ttt](layer, *args)


class StaticDecoder:
    """One decode of a prefilled ``state`` (decode rule entered) over static buffers it owns, for up to ``steps``
    fed tokens: :meth:`step` feeds one token per row and returns the next logits, :meth:`finish` writes the state
    back. ``capture``: compile the step and replay it as a CUDA graph (CUDA only)."""

    def __init__(self, model, state: ModelState, steps: int, decoding: StaticDecoding, capture: bool) -> None:
        began = time.perf_counter()
        config, text = model.config, model.model.language_model
        self.model, self.state, self.decoding, self.capture = model, state, decoding, capture
        self.chunk, self.window = config.lact_chunk_size, config.window_size
        self.start, self.fed, self.positions = state.num_tokens, 0, state.next_position
        self.graph: ChunkGraph | None = None
        self.weights: list[FastWeights | None] = []  # the fast weights in force (what finish hands back)
        self.consumed: list[TokenStream | None] = []  # each layer's chunk of the last update (for ``recent``)
        learners = [layer.self_attn.kernel for layer in text.layers if layer.is_ttt and config.ttt_branch]
        self.kernel = learners[0] if learners else None  # runs the decode rule's updates (one per model)
        counts = set()
        self.buffers: list[LayerBuffers] = []
        batch = len(self.positions)
        shape = (batch, config.text_config.num_key_value_heads, 0, config.text_config.head_dim)
        like = text.embed_tokens.weight.new_empty(shape)  # the KV dtype and device
        with torch.inference_mode(False), torch.no_grad():  # normal tensors: inference_mode and no_grad callers alike
            for i, (layer, layer_state) in enumerate(zip(text.layers, state.layers)):
                if layer_state.kv.end != self.start:
                    raise ValueError(
                        f"layer {i} has seen {layer_state.kv.end} tokens but the state {self.start}: a state can only "
                        "be decoded once every layer is up to date"
                    )
                if not layer.is_ttt:
                    self.buffers.append(self._anchor(layer_state.kv, like, steps))
                    self.weights.append(None)
                elif not config.ttt_branch:
                    self.buffers.append(LayerBuffers(*self._ring(layer_state.kv, like)))
                    self.weights.append(None)
                else:
                    memory = layer_state.ttt
                    counts.add(memory.pending)
                    self.buffers.append(LayerBuffers(*self._ring(layer_state.kv, like), *self._memory(memory, config)))
                    self.weights.append(memory.weights)
                self.consumed.append(None)
        if len(counts) > 1:
            raise ValueError(f"the TTT layers hold different numbers of pending tokens {sorted(counts)}")
        self.count = counts.pop() if counts else 0  # pending tokens, the same in every TTT layer
        with torch.inference_mode(False):  # advanced in place by the step (decode_step's ``where``)
            self.where = torch.tensor([self.start, self.count, *self.positions.tolist()], device=like.device)
        self.setup_s = time.perf_counter() - began  # per decode: building the buffers, then capturing the graph

    def _anchor(self, kv, like: Tensor, steps: int) -> LayerBuffers:
        """The state's own buffer, with room for the decode (a new one belongs to this state alone, as in eager
        decoding); the slots past the cache are zeroed: a masked slot weighs 0, and 0 * NaN (a never-written slot
        may hold any bits) would not be 0."""
        kv.reserve(self.start + steps, like)
        kv.value_buffer[:, :, self.start :].zero_()
        return LayerBuffers(kv.key_buffer, kv.value_buffer)

    def _ring(self, kv, like: Tensor) -> tuple[Tensor, Tensor]:
        """The window's keys/values in a ring of W slots; token i in slot i mod W (the cache holds the last
        min(W, tokens) tokens)."""
        keys = like.new_zeros(*like.shape[:2], self.window, like.shape[3])
        values = torch.zeros_like(keys)
        if kv.keys is not None:
            slots = torch.arange(self.start - kv.keys.shape[2], self.start, device=keys.device) % self.window
            keys[:, :, slots], values[:, :, slots] = kv.keys, kv.values
        return keys, values

    def _memory(self, memory: FastWeightMemory, config) -> tuple[tuple[Tensor, ...], TokenStream]:
        """Static fast weights, and the pending tokens' update inputs (the trailing ``pending`` of ``recent``)
        from slot 0 of buffers with room for C + 1: the decode rule updates once C are pending, after the token
        that made them C, and the first decoded token can join C pending ones."""
        dtype = self.weight_dtype(config.fast_weight_precision)
        w0, w1, w2 = (w.to(dtype, copy=True) for w in memory.weights[:3])
        heads, width = w0.shape[0], w0.shape[2]
        widths = (width, width, 1, 1, 1, 1 if config.use_momentum else None)
        rows = (row_dtype(config.fast_weight_precision), *[torch.float32] * 5)  # k as the prologue makes it
        pending = TokenStream(*(None if c is None else w0.new_zeros(heads, self.chunk + 1, c, dtype=row)
                                for c, row in zip(widths, rows)))
        if memory.pending:
            for buffer, t in zip(pending, memory.recent.slice(memory.recent.length - memory.pending)):
                if buffer is not None:
                    buffer[:, : memory.pending] = t
        return (w0, w1, w2), pending

    @staticmethod
    def weight_dtype(precision: str) -> torch.dtype:
        """The static fast weights' dtype: they enter the step's products only, so the rule of q and k rows
        (:func:`row_dtype`) holds: bf16 in the bf16 mode, rounded once when they are (re)built instead of at every
        token (the same bits)."""
        return row_dtype(precision)

    def step(self, token: Tensor) -> Tensor:
        """Feeds one token per row [B]; returns the logits [B, V] that follow it. Reads nothing back from the
        device: the step advances its own position counter, and the update's schedule is counted on the host."""
        with self.decoding.lock:
            if self.graph is None:
                self._capture(token)
            logits = self._replay(token)
        self.fed += 1
        self.count += 1
        if self.kernel is not None and FastWeightMemory.due(self.count, self.chunk, decoding=True, followed=False):
            self._update()
        return logits

    def _capture(self, token: Tensor) -> None:
        """Builds the step's graph (compiled and captured on CUDA) for tokens like ``token`` [B]."""
        began = time.perf_counter()
        shapes = tuple((b.keys.shape, None if b.weights is None else b.weights[0].dtype) for b in self.buffers)
        step = self.decoding.step(self.capture)
        model, buffers, where = self.model, self.buffers, self.where

        def bound(token: Tensor) -> tuple[Tensor]:  # no reference to self: no cycle to keep the buffers alive
            return (step(model, token, where, buffers),)  # past the decode

        # a shape (and weight dtype) captured before is compiled: one run before the capture settles it, not two
        warmups = 1 if shapes in self.decoding.captured else 2
        self.graph = ChunkGraph(bound, [token[:, None]], self.capture, warmups=warmups, rewind=lambda: where.sub_(1))
        self.decoding.captured.add(shapes)
        self.setup_s += time.perf_counter() - began

    def _replay(self, token: Tensor) -> Tensor:
        """One step on ``token`` [B] (a graph replay on CUDA): the token copied in, the logits [B, V] copied out."""
        return self.graph(token[:, None])[0]

    def _update(self) -> None:
        """The decode rule's update: the first C pending tokens update the weights; the rest move to slot 0."""
        chunk, rest = self.chunk, self.count - self.chunk
        for i, buffer in enumerate(self.buffers):
            if buffer.pending is None:
                continue
            tokens = TokenStream(*(None if t is None else t[:, :chunk] for t in buffer.pending))
            _, self.weights[i] = self.kernel.step(self.weights[i], None, tokens)
            self.consumed[i] = tokens.clone()
            with torch.inference_mode(False):
                for static, new in zip(buffer.weights, self.weights[i][:3]):
                    static.copy_(new)
                for t in buffer.pending:
                    if t is not None and rest:
                        t[:, :rest] = t[:, chunk : self.count].clone()
        with torch.inference_mode(False):
            self.where[1:2].sub_(chunk)  # the next token's pending slot, on the device
        self.count = rest

    def finish(self) -> None:
        """Writes the tokens fed so far into the state: what eager decoding of the same tokens leaves."""
        if not self.fed:
            return
        state, end = self.state, self.start + self.fed
        state.num_tokens, state.next_position = end, self.positions + self.fed
        for layer_state, buffer, weights, consumed in zip(state.layers, self.buffers, self.weights, self.consumed):
            kv = layer_state.kv
            kv.end = end
            if layer_state.ttt is None:  # an anchor: views of its own buffer, as a full cache keeps them
                kv.keys, kv.values = kv.key_buffer[:, :, :end], kv.value_buffer[:, :, :end]
                continue
            slots = torch.arange(end - min(self.window, end), end, device=buffer.keys.device) % self.window
            kv.keys, kv.values = buffer.keys[:, :, slots], buffer.values[:, :, slots]  # compact copies
            if buffer.pending is None:
                continue
            memory = layer_state.ttt
            newest = TokenStream(*(None if t is None else t[:, : self.count] for t in buffer.pending))
            older = None if consumed is None else consumed.slice(self.count)  # recent: the last C tokens
            memory.weights, memory.pending = weights, self.count
            memory.recent = TokenStream.cat([older, newest]).clone()

    def report(self) -> dict:
        return {"kernel": "graphed", "captured": self.graph is not None and self.graph.graph is not None,
                "setup_s": self.setup_s, "tokens": self.fed}


@contextmanager
def decode_steps(model, state: ModelState, steps: int) -> Iterator[Callable[[Tensor], Tensor]]:
    """A function feeding one decoded token per row [B] to ``model`` and returning the next logits [B, V], for up
    to ``steps`` tokens of a state in the decode rule, run as ``config.decode_kernel`` says. When the block ends
    (by an exception too) the state holds every token fed."""
    decoding: StaticDecoding = model.static_decoding
    if decoding.kind(model.config.decode_kernel, model.device) == "eager":
        decoding.last = {"kernel": "eager"}

        def forward(token: Tensor) -> Tensor:  # generated tokens are text, even one whose id is a placeholder's
            return model(token[:, None], state=state, mm_token_type_ids=torch.zeros_like(token[:, None])).logits[:, -1]

        yield forward
        return
    decoder: StaticDecoder | None = None

    def static(token: Tensor) -> Tensor:
        nonlocal decoder
        if decoder is None:  # built at the first fed token: a decode of one token feeds none
            decoder = StaticDecoder(model, state, steps, decoding, capture=token.is_cuda)
        return decoder.step(token)

    try:
        yield static
    finally:
        if decoder is not None:
            decoder.finish()
            decoding.last = decoder.report()
