"""Live tensor memory of a call on any device, the CPU included (where torch keeps no allocator statistics).

:class:`TensorMemory` is a TorchDispatchMode that sees every tensor an operator returns: a storage that no input of
the operator shares is new, and is counted until it is freed (a weakref finalizer on the storage). So it reports
what ``torch.cuda.max_memory_allocated`` / ``memory_allocated`` would report above the call's start, for the
tensors torch creates through operators: a view counts its whole storage once, however many views share it.
Buffers a kernel allocates internally (workspaces) are not seen. Use it on the reference kernels (the CPU): a
compiled graph's intermediates do not pass through the mode.

    with TensorMemory() as memory:
        state = model.new_state(1)
        model.generate(**inputs, max_new_tokens=1, state=state)
    memory.peak, memory.live  # bytes: the peak above the start, and what is still held (the state)
"""

from __future__ import annotations

import traceback
import weakref
from pathlib import Path
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from spatial_ttt.ops.fast_weight import row_dtype


class TensorMemory(TorchDispatchMode):
    """``peak``: the most bytes of storages created inside the block alive at once; ``live``: those alive now.
    With ``attribute``, ``at_peak`` tells what was alive at the peak (bytes by the spatial_ttt line and operator
    that created it) and where the peak was reached."""

    def __init__(self, attribute: bool = False) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.attribute = attribute
        self.at_peak: dict = {}
        self._sizes: dict[int, int] = {}  # storage id -> bytes, while alive
        self._sites: dict[int, str] = {}  # storage id -> where it was created (with ``attribute``)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in inputs or key in self._sizes:  # a view or an in-place result: no new memory
                continue
            self._sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            weakref.finalize(storage, self._free, key)
            if self.attribute:
                self._sites[key] = f"{site()} ({func.overloadpacket.__name__})"
            if self.live > self.peak:
                self.peak = self.live
                if self.attribute and storage.nbytes() > self.peak // 100:  # a peak worth explaining
                    self._explain()
        return out

    def created(self, tensors: Iterable[torch.Tensor]) -> int:
        """Bytes of the storages behind ``tensors`` that were created inside the block and are alive, each once."""
        keys = {t.untyped_storage()._cdata for t in tensors}
        return sum(self._sizes[key] for key in keys if key in self._sizes)

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)
        self._sites.pop(key, None)

    def _explain(self) -> None:
        by_site: dict[str, int] = {}
        for key, size in self._sizes.items():
            by_site[self._sites.get(key, "?")] = by_site.get(self._sites.get(key, "?"), 0) + size
        self.at_peak = dict(bytes=self.live, by_site=top(by_site), reached_at=site())


def site() -> str:
    """Where the current operator was called from: the innermost frame of spatial_ttt, with its operator line."""
    frames = [f for f in traceback.extract_stack() if "spatial_ttt" in f.filename]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line}" if frames else "?"


def top(sizes: dict[str, int], count: int = 10) -> dict[str, int]:
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:count])


def cuda_peak(fn) -> tuple[object, dict]:
    """fn's result, and what was alive at the peak of CUDA memory during it, above the start: bytes by the
    spatial_ttt line that allocated them (the caching allocator's history: compiled and graphed code included)."""
    torch.cuda.synchronize()
    torch.cuda.memory._record_memory_history(max_entries=2_000_000)
    try:
        result = fn()
        torch.cuda.synchronize()
        trace = torch.cuda.memory._snapshot()["device_traces"][torch.cuda.current_device()]
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    def replay(until: int) -> tuple[dict[int, tuple[int, int]], int, int]:
        """The blocks alive after event ``until`` (address -> (bytes, event index)), the peak and its event."""
        live: dict[int, tuple[int, int]] = {}
        total = peak = peak_at = 0
        for i, event in enumerate(trace[: until + 1]):
            if event["action"] == "alloc":
                live[event["addr"]] = (event["size"], i)
                total += event["size"]
                if total > peak:
                    peak, peak_at = total, i
            elif event["action"] == "free_completed" and event["addr"] in live:
                total -= live.pop(event["addr"])[0]
        return live, peak, peak_at

    _, peak, peak_at = replay(len(trace) - 1)
    live, _, _ = replay(peak_at)  # a second pass: copying the live set at every new peak would be quadratic
    by_site: dict[str, int] = {}
    for size, i in live.values():
        frames = [f for f in trace[i].get("frames", []) if "spatial_ttt" in f["filename"]]
        where = f"{Path(frames[0]['filename']).name}:{frames[0]['line']} {frames[0]['name']}" if frames else "?"
        by_site[where] = by_site.get(where, 0) + size
    return result, dict(bytes=peak, by_site=top(by_site), events=len(trace))


def storage_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes of the storages behind ``tensors``, each storage counted once (a view keeps its whole base alive)."""
    sizes = {}
    for t in tensors:
        if t is not None:
            storage = t.untyped_storage()
            sizes[storage._cdata] = storage.nbytes()
    return sum(sizes.values())


def model_kept_tensors(model) -> list[torch.Tensor]:
    """Tensors the model itself keeps between calls: the vision tower's inputs per grid (at most 16 grids)."""
    return [t for inputs in model.model.grids.values() for t in inputs.values() if isinstance(t, torch.Tensor)]


def state_tensors(state) -> dict[str, list[torch.Tensor]]:
    """Every tensor a :class:`spatial_ttt.state.ModelState` holds, by kind."""
    kinds: dict[str, list[torch.Tensor]] = dict(anchor_kv=[], window_kv=[], fast_weights=[], recent=[], counters=[])
    for layer in state.layers:
        kv = [layer.kv.keys, layer.kv.values, layer.kv.key_buffer, layer.kv.value_buffer]
        if layer.ttt is None:
            kinds["anchor_kv"] += kv
            continue
        kinds["window_kv"] += kv
        weights = layer.ttt.weights
        kinds["fast_weights"] += [weights.w0, weights.w1, weights.w2, *weights.norms, *(weights.momentum or ())]
        kinds["recent"] += list(layer.ttt.recent or ())
    kinds["counters"] += [state.next_position] if isinstance(state.next_position, torch.Tensor) else []
    return {kind: [t for t in ts if t is not None] for kind, ts in kinds.items()}


def expected_state_bytes(config, batch: int, tokens: int, capacity: int, kv_bytes: int) -> dict[str, int]:
    """What a ModelState must hold after a prompt of ``tokens`` tokens (before decoding), by kind, with its anchor
    buffers holding ``capacity`` tokens and KV elements of ``kv_bytes`` bytes (the model's dtype):

    * anchor layers: keys and values [B, H_kv, capacity, hd];
    * TTT layers: the window's keys and values [B, H_kv, min(W, N), hd]; the fast weights w0/w2 [BH, dh, d] and
      w1 [BH, d, dh] with their row norms [BH, dh | d | dh, 1], and after the first update (N > C) the momentum
      (three more weight-sized tensors); the last min(C, N) tokens' update inputs: k, v [BH, n, d], three rates
      and the momentum gate [BH, n, 1], fp32 except k, which the bf16 precision mode keeps in bf16
      (spatial_ttt.ops.fast_weight.row_dtype; a prompt run without autograd);
    * the next rope position per row (int64).
    """
    text = config.text_config
    kv_row = batch * text.num_key_value_heads * text.head_dim * kv_bytes  # one token's keys (or values)
    anchors = text.num_hidden_layers - len(config.ttt_layers)
    heads, d = batch * config.num_lact_heads, text.hidden_size // config.num_lact_heads
    dh, chunk = d * config.inter_multi, config.lact_chunk_size
    weights = 3 * heads * d * dh * 4
    norms = heads * (dh + d + dh) * 4
    momentum = weights if config.use_momentum and tokens > chunk else 0
    recent = min(chunk, tokens)
    k_bytes = row_dtype(config.fast_weight_precision).itemsize
    per_token_inputs = d * k_bytes + (d + 3 + (1 if config.use_momentum else 0)) * 4
    ttt = len(config.ttt_layers)
    return dict(
        anchor_kv=anchors * 2 * capacity * kv_row,
        window_kv=ttt * 2 * min(config.window_size, tokens) * kv_row,
        fast_weights=ttt * (weights + norms + momentum),
        recent=ttt * heads * recent * per_token_inputs,
        counters=batch * 8,
    )
