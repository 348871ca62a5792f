"""Streaming: a video flows into the model frame group by frame group at bounded memory; questions any time.

Tokens travel up the layers as segments (a run of text, or one video frame group). Every layer processes its
queue in order, except that a TTT layer with the spatial conv holds a frame group back until the next group has
reached it: the temporal conv sees the next frame. Each such layer therefore lags one group behind the layer
below; the lag is bounded by the number of conv layers. ``ask`` answers from a snapshot: it flushes the lagging
groups as if the video ended there (replicate padding, exactly what a one-shot prompt of the video so far does),
prefills the question and decodes, leaving the stream's memory untouched.

What stays per layer (spatial_ttt.state): fast weights + momentum + the last chunk of update inputs and the last
W keys/values in TTT layers (bounded), and the full KV cache in anchor layers (grows by one entry per token).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .layers.spatial_conv import conv_frame_group
from .models.modeling import SpatialTTTForConditionalGeneration
from .models.positions import rope_positions
from .ops.fast_weight import FastWeights, TokenStream
from .state import KVCache, LayerState, ModelState, Segment, StreamState, TTTState


class StreamError(ValueError):
    """Bad input to a stream, or a saved stream that does not fit the model."""


# ----------------------------------------------------------------------------------------------------------------
# the engine


def new_stream(model: SpatialTTTForConditionalGeneration, batch_size: int = 1) -> StreamState:
    layers = len(model.model.language_model.layers)
    return StreamState(model.new_state(batch_size), [[] for _ in range(layers)], [None] * layers)


def snapshot(stream: StreamState) -> StreamState:
    """A copy that can advance independently. Cheap: state tensors are never modified in place, only replaced."""
    layers = [
        LayerState(replace(layer.kv), None if layer.ttt is None else replace(layer.ttt)) for layer in stream.model.layers
    ]
    return StreamState(
        replace(stream.model, layers=layers),
        [list(queue) for queue in stream.queues],
        list(stream.previous_group),
        stream.num_frame_groups,
    )


@torch.no_grad()
def segments_from_tokens(
    model: SpatialTTTForConditionalGeneration,
    stream: StreamState,
    input_ids: Tensor,
    pixel_values_videos: Tensor | None = None,
    video_grid_thw: Tensor | None = None,
) -> list[Segment]:
    """Embeds the next tokens of the stream (all rows share one token layout) and cuts them into segments."""
    types = model.token_types(input_ids)
    if not bool((types == types[:1]).all()):
        raise StreamError("the streams of a batch must have the same token layout (same frame sizes and times)")
    merge = model.config.vision_config.spatial_merge_size
    hidden, visual_mask, deepstack = model.embed(input_ids, types, None, None, pixel_values_videos, video_grid_thw)
    state = stream.model
    positions, state.next_position = rope_positions(types.cpu(), None, video_grid_thw, merge, state.next_position)
    cos, sin = model.model.language_model.rotary_emb(hidden, positions.to(hidden.device))
    batch, length = input_ids.shape
    stacked = [d.view(batch, -1, d.shape[-1]) for d in deepstack]  # visual tokens of each row, in order
    groups = [] if video_grid_thw is None else [(h // merge, w // merge) for t, h, w in video_grid_thw[:1].tolist() for _ in range(t)]
    row_types = types[0].tolist()
    segments, i, visual_seen = [], 0, 0
    while i < length:
        if row_types[i] == 2:
            if not groups:
                raise StreamError("more video tokens than video_grid_thw describes")
            grid = groups.pop(0)
            j = i + grid[0] * grid[1]
            visual = slice(visual_seen, visual_seen + j - i)
            visual_seen += j - i
            segments.append(
                Segment(hidden[:, i:j], cos[:, i:j], sin[:, i:j], state.num_tokens + i, grid, [d[:, visual] for d in stacked])
            )
            stream.num_frame_groups += 1
        else:
            if row_types[i] == 1:
                raise StreamError("images are not supported in streams; send frames")
            j = i
            while j < length and row_types[j] == 0:
                j += 1
            segments.append(Segment(hidden[:, i:j], cos[:, i:j], sin[:, i:j], state.num_tokens + i))
        i = j
    state.num_tokens += length
    return segments


@torch.no_grad()
def feed(
    model: SpatialTTTForConditionalGeneration, stream: StreamState, segments: list[Segment], flush: bool = False
) -> list[Segment]:
    """Pushes segments up through all layers as far as they can go; returns those that left the last layer.
    ``flush`` treats every held-back frame group as the last one of the video."""
    layers = model.model.language_model.layers
    stream.queues[0].extend(segments)
    finished: list[Segment] = []
    for index, layer in enumerate(layers):
        done = _advance_layer(model, stream, index, flush)
        for segment in done:
            if segment.deepstack is not None and index < len(segment.deepstack):
                segment.hidden = segment.hidden + segment.deepstack[index]
        (stream.queues[index + 1] if index + 1 < len(layers) else finished).extend(done)
    return finished


def _advance_layer(model: SpatialTTTForConditionalGeneration, stream: StreamState, index: int, flush: bool) -> list[Segment]:
    layer = model.model.language_model.layers[index]
    queue, state = stream.queues[index], stream.model.layers[index]
    convolves = layer.is_ttt and model.config.use_conv_layer
    done = []
    while queue:
        segment = queue[0]
        extra: dict[str, Any] = {}
        if convolves and segment.grid_hw is not None:
            following = next((s for s in queue[1:] if s.grid_hw is not None), None)
            if following is None and not flush:
                break  # wait for the next frame group
            attention = layer.self_attn
            current = segment.projected or attention.project(layer.input_layernorm(segment.hidden))
            after = None
            if following is not None:
                following.projected = following.projected or attention.project(layer.input_layernorm(following.hidden))
                after = following.projected[3:]
            before = stream.previous_group[index]
            extra["conv_features"] = tuple(
                conv_frame_group(conv, None if before is None else before[j], current[3 + j],
                                 None if after is None else after[j], segment.grid_hw)
                for j, conv in enumerate(attention.convs)
            )
            extra["projected"] = current
            stream.previous_group[index] = tuple(current[3:])
        hidden = layer(segment.hidden, segment.cos, segment.sin, state, segment.start, [], stream.model.decoding, **extra)
        queue.pop(0)
        done.append(replace(segment, hidden=hidden, projected=None))
    return done


def final_logits(model: SpatialTTTForConditionalGeneration, segments: list[Segment]) -> Tensor:
    """Logits [B, n, V] of segments that left the last layer."""
    hidden = torch.cat([s.hidden for s in segments], dim=1)
    return model.lm_head(model.model.language_model.norm(hidden))


# ----------------------------------------------------------------------------------------------------------------
# the session


class StreamSession:
    """A live stream into a model: ``observe`` frames, ``ask`` questions at any time.

    With a ``processor`` (spatial_ttt.video.SpatialTTTProcessor) it takes frames and text; ``observe_tokens`` /
    ``ask_tokens`` take token-level inputs. ``batch_size`` > 1 runs independent streams in lock step (same
    frame sizes and times, different pixels; questions of the same token length).
    """

    def __init__(self, model: SpatialTTTForConditionalGeneration, processor: Any = None, batch_size: int = 1) -> None:
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.stream = new_stream(model, batch_size)
        self.num_frames = 0
        self.started = False
        self.last_time: float | None = None  # timestamp of the last frame observed: time only goes forward

    # -- input ----------------------------------------------------------------------------------------------

    def observe_tokens(self, input_ids: Tensor, pixel_values_videos: Tensor | None = None,
                       video_grid_thw: Tensor | None = None) -> None:
        if input_ids.shape[0] != self.batch_size:
            raise StreamError(f"input has {input_ids.shape[0]} rows but the session holds {self.batch_size} streams")
        feed(self.model, self.stream, segments_from_tokens(self.model, self.stream, input_ids, pixel_values_videos, video_grid_thw))

    def observe(self, frames: Any, timestamps: Sequence[float] | None = None) -> None:
        """Frames: uint8 [T, H, W, 3] (a VideoClip works too), or a list of such arrays, one per stream;
        T even (frames enter in pairs, Qwen3-VL's temporal patch). Timestamps in seconds, one per frame."""
        processor = self._need_processor()
        if hasattr(frames, "frames") and timestamps is None:
            frames, timestamps = frames.frames, frames.timestamps
        per_stream = list(frames) if isinstance(frames, (list, tuple)) else [frames]
        if len(per_stream) != self.batch_size:
            raise StreamError(f"got frames for {len(per_stream)} streams, the session holds {self.batch_size}")
        if timestamps is None:
            raise StreamError("timestamps (seconds, one per frame) are required")
        self._check_times(timestamps)
        pieces = [processor.encode_frames(torch.as_tensor(np.asarray(f)), list(timestamps)) for f in per_stream]
        if not self.started:
            self._start()
        ids = torch.cat([p.input_ids for p in pieces])
        pixels = torch.cat([p.pixel_values_videos for p in pieces])
        grids = torch.cat([p.video_grid_thw for p in pieces])
        self.observe_tokens(ids, pixels, grids[:1] if self.batch_size == 1 else grids)
        self.num_frames += len(timestamps)
        self.last_time = float(timestamps[-1])

    # -- questions ------------------------------------------------------------------------------------------

    def ask_tokens(self, suffix_ids: Tensor, max_new_tokens: int = 16, keep: bool = False, **sampling: Any) -> Tensor:
        """New tokens [B, n] answering the suffix (question through assistant start) from a snapshot.
        With ``keep``, the question and answer become part of the stream (the video restarts after them)."""
        stream = self.stream if keep else snapshot(self.stream)
        out = feed(self.model, stream, segments_from_tokens(self.model, stream, suffix_ids), flush=True)
        logits = final_logits(self.model, out[-1:])[:, -1]
        tokens = self.model.decode(stream.model, logits, max_new_tokens, **sampling)
        if keep:
            stream.model.decoding = False
            stream.previous_group = [None] * len(stream.previous_group)
        return tokens

    def ask(self, question: str, max_new_tokens: int = 16, keep: bool = False, **sampling: Any) -> str | list[str]:
        processor = self._need_processor()
        if not self.started:
            self._start()
        suffix = processor.suffix(question).input_ids.repeat(self.batch_size, 1)
        sampling.setdefault("stop_token_ids", processor.stop_token_ids)
        tokens = self.ask_tokens(suffix, max_new_tokens, keep=keep, **sampling)
        answers = [processor.decode(row.tolist()).strip() for row in tokens]  # as the pipeline's answers
        return answers[0] if self.batch_size == 1 else answers

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """The whole session (memory, caches, pending segments) to one safetensors file, written atomically."""
        tensors, meta = _flatten(self.stream)
        meta.update(num_frames=self.num_frames, started=self.started, batch_size=self.batch_size,
                    fingerprint=model_fingerprint(self.model), last_time=self.last_time)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"spatial_ttt_stream": json.dumps(meta)})
        tmp.chmod(0o644)  # like every other output (the writer creates it 0600)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, model: SpatialTTTForConditionalGeneration, processor: Any = None) -> "StreamSession":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("spatial_ttt_stream")
        except Exception as err:
            raise StreamError(f"{path}: not a readable stream file ({err})") from err
        if raw is None:
            raise StreamError(f"{path}: not a spatial-ttt stream file")
        meta = json.loads(raw)
        if meta["fingerprint"] != model_fingerprint(model):
            raise StreamError(f"{path} was saved from another model or config; it cannot continue with this one")
        session = cls(model, processor, meta["batch_size"])
        session.stream = _unflatten(load_file(str(path)), meta)
        session.num_frames, session.started = meta["num_frames"], meta["started"]
        session.last_time = meta.get("last_time")
        return session

    # -- accounting -----------------------------------------------------------------------------------------

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held by the stream, by kind: fast weights, TTT pending inputs, window KV, anchor KV, queues."""
        sizes = dict(fast_weights=0, ttt_recent=0, window_kv=0, anchor_kv=0, queued=0)
        for layer in self.stream.model.layers:
            kv = sum(t.numel() * t.element_size() for t in (layer.kv.keys, layer.kv.values) if t is not None)
            if layer.ttt is None:
                sizes["anchor_kv"] += kv
                continue
            sizes["window_kv"] += kv
            sizes["fast_weights"] += sum(_bytes(t) for t in _weight_tensors(layer.ttt.weights))
            if layer.ttt.recent is not None:
                sizes["ttt_recent"] += sum(_bytes(t) for t in layer.ttt.recent if t is not None)
        for queue in self.stream.queues:
            sizes["queued"] += sum(_bytes(s.hidden) + _bytes(s.cos) * 2 for s in queue)
        return sizes

    # -- helpers --------------------------------------------------------------------------------------------

    def _need_processor(self):
        if self.processor is None:
            raise StreamError("this session has no processor: use observe_tokens / ask_tokens")
        return self.processor

    def _check_times(self, timestamps: Sequence[float]) -> None:
        times = [float(t) for t in timestamps]
        if not all(math.isfinite(t) for t in times):
            raise StreamError(f"timestamps must be finite seconds, got {times}")
        previous = self.last_time
        for t in times:
            if previous is not None and t < previous:
                raise StreamError(f"timestamps go backwards: {t:g} s after {previous:g} s (a stream only moves forward)")
            previous = t

    def _start(self) -> None:
        prefix = self.processor.prefix().input_ids.repeat(self.batch_size, 1)
        self.observe_tokens(prefix)
        self.started = True


def model_fingerprint(model: SpatialTTTForConditionalGeneration) -> str:
    """Config plus a sample of every parameter: a stream saved from other weights or settings will not match."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, param in model.state_dict().items():
        digest.update(name.encode())
        digest.update(param.detach().flatten()[:8].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _bytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _weight_tensors(weights: FastWeights) -> list[Tensor]:
    return [weights.w0, weights.w1, weights.w2, *weights.norms, *(weights.momentum or ())]


def _flatten(stream: StreamState) -> tuple[dict[str, Tensor], dict[str, Any]]:
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
                entry["recent_momentum"] = layer.ttt.recent.momentum is not None
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


def _unflatten(tensors: dict[str, Tensor], meta: dict[str, Any]) -> StreamState:
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
            ttt = TTTState(weights, recent, entry["pending"])
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
