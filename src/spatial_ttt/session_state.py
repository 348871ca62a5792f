"""What a stream carries besides the model's state: the segments queued between layers, snapshots, stream files.

The model's state (:mod:`spatial_ttt.state`: fast weights, KV caches, positions) is what any forward continues from;
a :class:`StreamState` adds what only a stream needs. A :func:`snapshot` is a cheap copy for answering a question:
it shares the source's anchor KV buffers (copying them per question would double the largest part of the memory),
so it is valid only until the source advances, and only one snapshot at a time may add tokens past the source's
end. Both rules are enforced: using a snapshot that broke one raises :class:`StaleSnapshotError`.

A stream file is one safetensors file: the tensors, plus JSON metadata with ``format`` (:data:`FORMAT_VERSION`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from .ops.fast_weight import FastWeights, TokenStream
from .ops.fast_weight_memory import FastWeightMemory
from .state import KVCache, LayerState, ModelState

FORMAT_VERSION = 1  # bump when the layout of a stream file changes; load refuses any other
METADATA_KEY = "spatial_ttt_stream"
EXTRA = "session."  # key prefix of the session's own tensors (e.g. a pending frame)


class StreamError(ValueError):
    """Bad input to a stream, or a saved stream that does not fit the model."""


class StaleSnapshotError(StreamError):
    """A snapshot used after its source stream advanced, or after another snapshot of it added tokens."""


@dataclass
class Segment:
    """Tokens travelling up the layers of a stream: a run of text or exactly one video frame group.

    ``hidden`` is the input of the layer whose queue holds the segment. A frame group carries its grid and
    deepstack features.
    """

    hidden: Tensor  # [B, n, D]
    cos: Tensor
    sin: Tensor
    start: int  # absolute index of the first token
    grid_hw: tuple[int, int] | None = None  # set for a video frame group
    deepstack: list[Tensor] | None = None  # per level [B, n, D], frame groups only


@dataclass
class StreamState:
    """A stream through the model: the model state plus, per layer, the segments waiting to enter it and the
    previous frame group's pre-conv features (the temporal conv needs both neighbours of a group)."""

    model: ModelState
    queues: list[list[Segment]]
    previous_group: list[tuple[Tensor, Tensor, Tensor] | None]
    num_frame_groups: int = 0
    source: StreamState | None = field(default=None, repr=False)  # a snapshot's source; None for a source
    version: int = 0  # a source: how often it advanced; a snapshot: its source's version when taken
    scratch: object | None = field(default=None, repr=False)  # a source: the snapshot whose tokens lie past its end
    wrote: bool = False  # a snapshot: it has added tokens of its own

    def advance(self) -> None:
        """Called before every change of the stream: invalidates the snapshots this one would overwrite."""
        source = self.source
        if source is None:
            self.version += 1
            self.scratch = None
            return
        if source.version != self.version:
            raise StaleSnapshotError(
                "this snapshot was taken before its stream advanced: it shares the stream's KV buffers, which the "
                "stream has overwritten since; take a new snapshot"
            )
        if self.wrote and source.scratch is not self:
            raise StaleSnapshotError(
                "another snapshot of the same stream has added tokens since this one did, overwriting them; "
                "take a new snapshot"
            )
        source.scratch, self.wrote = self, True


def snapshot(stream: StreamState) -> StreamState:
    """A copy that can advance independently of ``stream`` until ``stream`` advances (see the module doc).
    Cheap: model-state tensors are never modified in place, only replaced, except the full KV buffers."""
    if stream.source is not None:
        raise StreamError("cannot snapshot a snapshot: take another snapshot of its source stream")
    layers = [
        LayerState(replace(layer.kv), None if layer.ttt is None else replace(layer.ttt)) for layer in stream.model.layers
    ]
    return StreamState(
        replace(stream.model, layers=layers),
        [list(queue) for queue in stream.queues],
        list(stream.previous_group),
        stream.num_frame_groups,
        source=stream,
        version=stream.version,
    )


def select_rows(stream: StreamState, rows: list[int]) -> StreamState:
    """A new stream holding only the given batch rows of ``stream`` (copied; ``stream`` is left as it is)."""
    batch = len(stream.model.next_position)
    tensors, meta = flatten(stream)
    # every tensor is batch-major: [B, ...] or [B * heads, ...] (fast weights, update inputs)
    return unflatten({k: t.unflatten(0, (batch, -1))[rows].flatten(0, 1).clone() for k, t in tensors.items()}, meta)


# ----------------------------------------------------------------------------------------------------------------
# stream files


def save_stream(path: str | Path, stream: StreamState, info: dict[str, Any], extra: dict[str, Tensor]) -> None:
    """The stream (memory, caches, pending segments), ``info`` (JSON values) and ``extra`` tensors of the session
    to one file, written atomically."""
    tensors, meta = flatten(stream)
    tensors.update({f"{EXTRA}{name}": t.contiguous() for name, t in extra.items()})
    meta.update(info, format=FORMAT_VERSION)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    tmp.chmod(0o644)  # like every other output (the writer creates it 0600)
    tmp.replace(path)


def read_stream_info(path: str | Path) -> dict[str, Any]:
    """The metadata of a stream file; refuses files that are not stream files of this format version."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as err:
        raise StreamError(f"{path}: not a readable stream file ({err})") from err
    if raw is None:
        raise StreamError(f"{path}: not a spatial-ttt stream file")
    meta = json.loads(raw)
    version = meta.get("format")
    if version != FORMAT_VERSION:
        written = "an unversioned early format" if version is None else f"format {version}"
        raise StreamError(
            f"{path}: stream file of {written}; this version of spatial-ttt reads format {FORMAT_VERSION} only"
        )
    return meta


def load_stream(path: str | Path, device: torch.device | str) -> tuple[StreamState, dict[str, Any], dict[str, Tensor]]:
    """A saved stream with its tensors on ``device`` (the model's), whatever device it was saved from; its info
    and the session's extra tensors (on the CPU)."""
    meta = read_stream_info(path)
    tensors = load_file(str(path), device="cpu")
    extra = {k[len(EXTRA):]: tensors.pop(k) for k in list(tensors) if k.startswith(EXTRA)}
    # rope positions are bookkeeping done on the CPU; the model computes with everything else on its device
    tensors = {k: t if k == "next_position" else t.to(device) for k, t in tensors.items()}
    return unflatten(tensors, meta), meta, extra


def flatten(stream: StreamState) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors by key plus JSON metadata describing the structure."""
    tensors: dict[str, Tensor] = {"next_position": stream.model.next_position}
    meta: dict[str, Any] = dict(num_tokens=stream.model.num_tokens, decoding=stream.model.decoding,
                                num_frame_groups=stream.num_frame_groups, layers=[])
    for i, layer in enumerate(stream.model.layers):
        entry: dict[str, Any] = dict(window=layer.kv.window, kv_end=layer.kv.end, kv=layer.kv.keys is not None)
        if layer.kv.keys is not None:
            tensors[f"{i}.k"], tensors[f"{i}.v"] = layer.kv.keys, layer.kv.values
        if layer.ttt is not None:
            w = layer.ttt.weights
            for name, t in zip(("w0", "w1", "w2", "n0", "n1", "n2"), (w.w0, w.w1, w.w2, *w.norms)):
                tensors[f"{i}.{name}"] = t
            entry["momentum"] = w.momentum is not None
            for j, t in enumerate(w.momentum or ()):
                tensors[f"{i}.m{j}"] = t
            entry["pending"] = layer.ttt.pending
            entry["recent"] = layer.ttt.recent is not None
            if layer.ttt.recent is not None:
                for name, t in zip(TokenStream._fields, layer.ttt.recent):
                    if t is not None:
                        tensors[f"{i}.recent.{name}"] = t
        if stream.previous_group[i] is not None:
            for j, t in enumerate(stream.previous_group[i]):
                tensors[f"{i}.prev{j}"] = t
        entry["queue"] = []
        for s, seg in enumerate(stream.queues[i]):
            key = f"{i}.q{s}"
            tensors[f"{key}.hidden"], tensors[f"{key}.cos"], tensors[f"{key}.sin"] = seg.hidden, seg.cos, seg.sin
            for d, t in enumerate(seg.deepstack or ()):
                tensors[f"{key}.ds{d}"] = t
            entry["queue"].append(dict(start=seg.start, grid=seg.grid_hw, deepstack=len(seg.deepstack or ())))
        meta["layers"].append(entry)
    return {k: v.contiguous() for k, v in tensors.items()}, meta


def unflatten(tensors: dict[str, Tensor], meta: dict[str, Any]) -> StreamState:
    layers, queues, previous = [], [], []
    for i, entry in enumerate(meta["layers"]):
        kv = KVCache(entry["window"], tensors.get(f"{i}.k"), tensors.get(f"{i}.v"), entry["kv_end"])
        ttt = None
        if f"{i}.w0" in tensors:
            momentum = tuple(tensors[f"{i}.m{j}"] for j in range(3)) if entry["momentum"] else None
            weights = FastWeights(tensors[f"{i}.w0"], tensors[f"{i}.w1"], tensors[f"{i}.w2"],
                                  tuple(tensors[f"{i}.n{j}"] for j in range(3)), momentum)
            recent = None
            if entry["recent"]:
                recent = TokenStream(*(tensors.get(f"{i}.recent.{name}") for name in TokenStream._fields))
            ttt = FastWeightMemory(weights, recent, entry["pending"])
        layers.append(LayerState(kv, ttt))
        previous.append(tuple(tensors[f"{i}.prev{j}"] for j in range(3)) if f"{i}.prev0" in tensors else None)
        queue = []
        for s, seg in enumerate(entry["queue"]):
            key = f"{i}.q{s}"
            deepstack = [tensors[f"{key}.ds{d}"] for d in range(seg["deepstack"])] or None
            grid = tuple(seg["grid"]) if seg["grid"] is not None else None
            queue.append(Segment(tensors[f"{key}.hidden"], tensors[f"{key}.cos"], tensors[f"{key}.sin"], seg["start"], grid, deepstack))
        queues.append(queue)
    model_state = ModelState(layers, meta["num_tokens"], tensors["next_position"], meta["decoding"])
    return StreamState(model_state, queues, previous, meta["num_frame_groups"])
