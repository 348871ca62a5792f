"""Streaming: a video flows into the model frame group by frame group at bounded memory; questions any time.

Tokens travel up the layers as segments (a run of text, or one video frame group). Every layer processes its
queue in order, except that a TTT layer with the spatial conv holds a frame group back until the next group has
reached it: the temporal conv sees the next frame. Each such layer therefore lags one group behind the layer
below; the lag is bounded by the number of conv layers. ``ask`` answers from a snapshot: it flushes the lagging
groups as if the video ended there (replicate padding, exactly what a one-shot prompt of the video so far does),
prefills the question and decodes, leaving the stream's memory untouched. What a stream keeps besides the
model's state (queues, snapshots, the stream file) is spatial_ttt.session_state.

What stays per layer (spatial_ttt.state): fast weights + momentum + the last chunk of update inputs and the last
W keys/values in TTT layers (bounded), and the full KV cache in anchor layers (grows by one entry per token).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .configuration import EXECUTION_SETTINGS
from .layers.ttt import Precomputed
from .models.modeling import SpatialTTTForConditionalGeneration
from .models.positions import rope_positions
from .ops.fast_weight import FastWeights
from .state import ModelState
from .video.patches import pixel_target
from .session_state import (
    Segment,
    StaleSnapshotError,
    StreamError,
    StreamState,
    load_stream,
    read_stream_info,
    save_stream,
    select_rows,
    snapshot,
)

__all__ = ["StaleSnapshotError", "StreamError", "StreamSession", "feed", "final_logits", "new_stream",
           "prefill_in_pieces", "segments_from_tokens", "snapshot"]


# ----------------------------------------------------------------------------------------------------------------
# the engine


def new_stream(model: SpatialTTTForConditionalGeneration, batch_size: int = 1, state: ModelState | None = None) -> StreamState:
    """A stream with empty queues over ``state`` (a fresh model state of ``batch_size`` rows if None)."""
    layers = len(model.model.language_model.layers)
    state = model.new_state(batch_size) if state is None else state
    return StreamState(state, [[] for _ in range(layers)], [None] * layers)


@torch.no_grad()
def segments_from_tokens(
    model: SpatialTTTForConditionalGeneration,
    stream: StreamState,
    input_ids: Tensor,
    pixel_values_videos: Tensor | None = None,
    video_grid_thw: Tensor | None = None,
    token_types: Tensor | None = None,
) -> list[Segment]:
    """Embeds the next tokens of the stream (all rows share one token layout) and cuts them into segments.
    ``token_types``: the tokens' types in host memory where the caller has them (prefill_in_pieces), else they
    are read back once: each read-back of a GPU tensor makes the host wait until the GPU's queue has drained."""
    types = model.token_types(input_ids)
    host = types.cpu() if token_types is None else token_types
    if not bool((host == host[:1]).all()):
        raise StreamError("the streams of a batch must have the same token layout (same frame sizes and times)")
    stream.advance()
    merge = model.config.vision_config.spatial_merge_size
    hidden, visual_mask, deepstack = model.embed(input_ids, types, None, None, pixel_values_videos, video_grid_thw, host)
    state = stream.model
    positions, state.next_position = rope_positions(host, None, video_grid_thw, merge, state.next_position)
    cos, sin = model.model.language_model.rotary_emb(hidden, _to_device(positions, hidden.device))
    batch, length = input_ids.shape
    stacked = [d.view(batch, -1, d.shape[-1]) for d in deepstack]  # visual tokens of each row, in order
    groups = [] if video_grid_thw is None else [(h // merge, w // merge) for t, h, w in video_grid_thw[:1].tolist() for _ in range(t)]
    row_types = host[0].tolist()
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
    ``flush`` treats every held-back frame group as the last one of the video. The stream takes the segments:
    ``segments`` is emptied, so that the caller's list does not keep their inputs alive up all the layers."""
    stream.advance()
    layers = model.model.language_model.layers
    _enqueue(stream.queues[0], segments)
    segments.clear()
    finished: list[Segment] = []
    for index, layer in enumerate(layers):
        done = _advance_layer(model, stream, index, flush)
        for segment in done:
            if segment.deepstack is not None and index < len(segment.deepstack):
                segment.hidden = segment.hidden + segment.deepstack[index]
                if index == len(segment.deepstack) - 1:  # its last level: dead for the layers above
                    segment.deepstack = None
        if index + 1 < len(layers):
            _enqueue(stream.queues[index + 1], done)
        else:
            finished.extend(done)
        del done  # held by the next queue alone: the next layer drops this layer's output once it has joined it
    return finished


def _enqueue(queue: list[Segment], segments: list[Segment]) -> None:
    """Appends segments, joining text that continues a queued text segment: the same tokens are then cut into the
    same segments however the input was split into pieces (pieces cut between a frame group's vision_end and the
    next timestamp), so a stream computes the same numbers whatever its piece sizes."""
    for segment in segments:
        last = queue[-1] if queue else None
        if last is not None and last.grid_hw is None and segment.grid_hw is None:
            queue[-1] = Segment(*(torch.cat([a, b], dim=1) for a, b in
                                  ((last.hidden, segment.hidden), (last.cos, segment.cos), (last.sin, segment.sin))),
                                last.start)
        else:
            queue.append(segment)


def _advance_layer(model: SpatialTTTForConditionalGeneration, stream: StreamState, index: int, flush: bool) -> list[Segment]:
    """Runs every segment of the layer's queue that may go now through the layer in ONE call (the layer is causal
    and its memory takes pieces of any length exactly, so one call over the joined segments computes what one call
    per segment would, with far fewer, larger kernels). A conv layer holds its last frame group back until the next
    one arrives, and everything queued behind it."""
    layer = model.model.language_model.layers[index]
    queue, state = stream.queues[index], stream.model.layers[index]
    convolves = layer.is_ttt and model.config.use_conv_layer
    groups = [i for i, segment in enumerate(queue) if segment.grid_hw is not None]
    ready = len(queue) if flush or not convolves or not groups else groups[-1]
    if not ready:
        return []
    segments, held = queue[:ready], queue[ready:]
    hidden, cos, sin = (torch.cat(parts, dim=1) if len(parts) > 1 else parts[0] for parts in
                        zip(*((s.hidden, s.cos, s.sin) for s in segments)))
    precomputed = None
    if convolves and any(s.grid_hw is not None for s in segments):
        precomputed = _conv_inputs(layer, stream, index, segments, hidden, held[0] if held else None)
    # the segments' inputs are joined in ``hidden`` now: neither the queue nor the output's segments keep them.
    # What the outputs take of each segment goes in a tuple, and one split cuts the output: a piece's ~200
    # segments pass 28 layers, and two dataclasses.replace and a slice per segment took 5.6 us of host time
    # against 1.3 us now (session 21, a 2-core CI-class CPU: ~0.14 s of a 1024-frame prompt) while the GPU waited
    kept = [(s.cos, s.sin, s.start, s.grid_hw, s.deepstack) for s in segments]
    lengths, start = [s.hidden.shape[1] for s in segments], segments[0].start
    del segments, queue[:ready]
    out = layer(hidden, cos, sin, state, start, [], stream.model.decoding, precomputed)
    done = [Segment(part, *rest) for part, rest in zip(out.split(lengths, dim=1), kept)]
    if not flush:  # what may wait at the next layer owns its memory, not a view of the whole piece
        waiting = [i for i, s in enumerate(done) if s.grid_hw is not None][-1:]
        for segment in done[waiting[0] if waiting else len(done):]:
            _own(segment)
    for segment in held:  # waiting here for the next piece: nor may what this layer holds back
        _own(segment)
    return done


def _own(segment: Segment) -> None:
    """Gives a segment compact copies of the tensors it views in larger ones (its piece's embeddings, deepstack
    features, rope tables), so that a segment waiting for the next piece does not keep the whole piece alive."""
    def own(t: Tensor) -> Tensor:
        return t.clone() if t.untyped_storage().nbytes() > t.numel() * t.element_size() else t

    segment.hidden, segment.cos, segment.sin = own(segment.hidden), own(segment.cos), own(segment.sin)
    if segment.deepstack is not None:
        segment.deepstack = [own(d) for d in segment.deepstack]


def _conv_inputs(layer: Any, stream: StreamState, index: int, segments: list[Segment], hidden: Tensor,
                 following: Segment | None) -> Precomputed:
    """The TTT layer's projections of the joined segments and their conv features: each frame group convolved
    between its neighbours (the previous call's last group, the groups here, the held group after them), the
    text between them passing through, exactly as the one-shot prompt's conv over the whole video."""
    attention = layer.self_attn
    normed = layer.input_layernorm(hidden)  # handed to the layer with the projections: normalised once
    projected = attention.project(normed)
    after = None
    if following is not None:  # the held frame group (a flush holds none back)
        after = attention.project(layer.input_layernorm(following.hidden))[3:]
    conv_groups = attention.conv_groups(hidden)  # the one-shot prompt's stencil, over the groups where they lie
    starts, offset, grids = [], 0, set()
    for segment in segments:
        if segment.grid_hw is not None:
            starts.append(offset)
            grids.add(segment.grid_hw)
        offset += segment.hidden.shape[1]
    grid, previous = next(iter(grids)), stream.previous_group[index]  # (more than one grid is refused below)
    if len(grids | {s.grid_hw for s in [following] if s is not None}) > 1 or (
            previous is not None and previous[0].shape[1] != grid[0] * grid[1]):
        raise StreamError("the frame size changed within a stream; start a new stream for frames of another size")
    # the frame groups found by their first rows, one call per input (not a slice per segment: a piece has ~100
    # frame groups and ~100 text segments between them, and those small ops kept the GPU waiting for the host,
    # session 21); text rows pass through unchanged
    first_rows = _to_device(torch.tensor(starts, dtype=torch.long), hidden.device)
    size = grid[0] * grid[1]
    conv_features, last = [], []
    for j, (t, conv) in enumerate(zip(projected[3:], attention.convs)):
        conv_features.append(conv_groups(t, first_rows, None if previous is None else previous[j],
                                         None if after is None else after[j], grid, conv.weight))
        last.append(t[:, starts[-1] : starts[-1] + size].clone())  # the next call's previous group, compact
    stream.previous_group[index] = tuple(last)
    return Precomputed(projected, tuple(conv_features), normed)


def _to_device(host: Tensor, device: torch.device) -> Tensor:
    """Host data on ``device`` without waiting for the GPU: a copy from pageable memory makes torch synchronise
    the stream (the host then waits for the GPU's queue to drain and loses its lead), one from pinned memory
    does not."""
    return host.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else host.to(device)


def final_logits(model: SpatialTTTForConditionalGeneration, segments: list[Segment]) -> Tensor:
    """Logits [B, n, V] of segments that left the last layer."""
    hidden = torch.cat([s.hidden for s in segments], dim=1)
    return model.lm_head(model.model.language_model.norm(hidden))


def prefill_in_pieces(
    model: SpatialTTTForConditionalGeneration,
    state: ModelState,
    input_ids: Tensor,
    pixel_values_videos: Tensor,
    video_grid_thw: Tensor,
    piece_tokens: int,
) -> Tensor:
    """Last logits [B, V] of a video prompt run into ``state`` as a stream: pieces of whole frame groups of at most
    ``piece_tokens`` tokens (unless one group is longer; vision tower included), the last one flushed. The same numbers as one forward
    over the prompt (the stream engine's guarantee), but its activations never exist for the whole prompt at once,
    so the peak memory is the state plus one piece. Every row holds one video of the same grid."""
    batch, length = input_ids.shape
    t, h, w = video_grid_thw[0].tolist()
    if len(video_grid_thw) != batch or bool((video_grid_thw != video_grid_thw[0]).any()):
        raise StreamError("piecewise prefill needs one video of the same size in every row")
    merge = model.config.vision_config.spatial_merge_size
    group_tokens = h * w // merge**2
    # the layout stays in host memory: read back from the GPU in every piece, it would make the host wait for the
    # GPU's queue to drain each time (sync_points.py: ten times a piece before session 21)
    types = model.token_types(input_ids).cpu()
    video = torch.nonzero(types[0] == 2).flatten().tolist()
    group_starts = video[::group_tokens]  # the first token of each temporal group
    cuts, last = [], 0  # (group, token) where a piece ends: before a group that would make it longer than piece_tokens
    for g, (first, following) in enumerate(zip(group_starts, [*group_starts[1:], length])):
        if g and following - last > piece_tokens:
            cuts.append((g, first))
            last = first
    per_row = pixel_values_videos.view(batch, t * h * w, -1)
    stream = new_stream(model, state=state)
    g0, start = 0, 0
    for g1, end in [*cuts, (t, length)]:
        out = None  # the previous piece's output, dead before this piece's vision tower runs: one piece alive
        pixels = per_row[:, g0 * h * w : g1 * h * w].reshape(-1, per_row.shape[-1]) if g1 > g0 else None
        grid = torch.tensor([[g1 - g0, h, w]] * batch) if g1 > g0 else None
        segments = segments_from_tokens(model, stream, input_ids[:, start:end], pixels, grid, types[:, start:end])
        del pixels  # (a copy where the rows of a batch are gathered)
        out = feed(model, stream, segments, flush=end == length)  # takes the segments (the list is emptied)
        g0, start = g1, end
    return final_logits(model, out[-1:])[:, -1]


# ----------------------------------------------------------------------------------------------------------------
# the session


@dataclass
class PendingFrame:
    """The last frame of each stream after an odd number of frames: frames enter the memory in pairs (Qwen3-VL's
    temporal patch), so it waits for the next frame instead of being padded into the memory."""

    frames: list[np.ndarray]  # per stream [1, H, W, 3]
    timestamp: float


class StreamSession:
    """A live stream into a model: ``observe`` frames, ``ask`` questions at any time.

    With a ``processor`` (spatial_ttt.video.SpatialTTTProcessor) it takes frames and text; ``observe_tokens`` /
    ``ask_tokens`` take token-level inputs. ``batch_size`` > 1 runs independent streams in lock step (same
    frame sizes and times, different pixels; questions of the same token length). ``ask(keep=True)`` makes each
    stream's answer part of its memory; answers differ in length, so from then on each stream has its own state
    (``lanes``) and they are fed one after the other.
    """

    def __init__(self, model: SpatialTTTForConditionalGeneration, processor: Any = None, batch_size: int = 1) -> None:
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.lanes: list[StreamState] = [new_stream(model, batch_size)]  # all streams, or one lane per stream
        self.num_frames = 0  # frames observed (a pending odd frame included)
        self.pending: PendingFrame | None = None
        self.started = False
        self.last_time: float | None = None  # timestamp of the last frame observed: time only goes forward

    @property
    def stream(self) -> StreamState:
        """The state of all streams while they run in lock step."""
        if len(self.lanes) != 1:
            raise StreamError("the streams of this session run apart since ask(keep=True): see session.lanes")
        return self.lanes[0]

    # -- input ----------------------------------------------------------------------------------------------

    def observe_tokens(self, input_ids: Tensor, pixel_values_videos: Tensor | None = None,
                       video_grid_thw: Tensor | None = None) -> None:
        if input_ids.shape[0] != self.batch_size:
            raise StreamError(f"input has {input_ids.shape[0]} rows but the session holds {self.batch_size} streams")
        for lane, piece in zip(self.lanes, self._per_lane(input_ids, pixel_values_videos, video_grid_thw)):
            feed(self.model, lane, segments_from_tokens(self.model, lane, *piece))

    def observe(self, frames: Any, timestamps: Sequence[float] | None = None) -> None:
        """Frames: uint8 [T, H, W, 3] (a VideoClip works too), or a list of such arrays, one per stream, with
        timestamps in seconds, one per frame. Frames enter the memory in pairs; an odd last frame waits for the
        next call (a question asked meanwhile sees it padded, as a one-shot prompt of the video so far would)."""
        self._need_processor()
        if hasattr(frames, "frames") and timestamps is None:
            frames, timestamps = frames.frames, frames.timestamps
        per_stream = [np.asarray(f) for f in (frames if isinstance(frames, (list, tuple)) else [frames])]
        if len(per_stream) != self.batch_size:
            raise StreamError(f"got frames for {len(per_stream)} streams, the session holds {self.batch_size}")
        if timestamps is None:
            raise StreamError("timestamps (seconds, one per frame) are required")
        self._check_times(timestamps)
        times = [float(t) for t in timestamps]
        if any(len(f) != len(times) for f in per_stream):
            raise StreamError(f"{[len(f) for f in per_stream]} frames but {len(times)} timestamps")
        self.num_frames += len(times)
        self.last_time = times[-1]
        if self.pending is not None:
            per_stream = [np.concatenate([p, f]) for p, f in zip(self.pending.frames, per_stream)]
            times = [self.pending.timestamp, *times]
        paired = len(times) - len(times) % 2
        self.pending = PendingFrame([f[paired:] for f in per_stream], times[paired]) if paired < len(times) else None
        if paired:
            self._start()
            self.observe_tokens(*self._encode([f[:paired] for f in per_stream], times[:paired]))

    # -- questions ------------------------------------------------------------------------------------------

    def ask_tokens(self, suffix_ids: Tensor, max_new_tokens: int = 16, keep: bool = False,
                   turn_end_ids: Sequence[int] | None = None, **sampling: Any) -> Tensor:
        """New tokens [B, n] answering the suffix (question through assistant start) from a snapshot; a stream
        that stopped early is padded with its last token. With ``keep``, the question and the answer become part
        of the stream, closed by ``turn_end_ids`` (the tokens between an answer and the next user turn's content,
        ``processor.turn_end()``); the video restarts after them."""
        return self._ask(suffix_ids, None, max_new_tokens, keep, turn_end_ids, sampling)

    def ask(self, question: str, max_new_tokens: int = 16, keep: bool = False, **sampling: Any) -> str | list[str]:
        processor = self._need_processor()
        self._start()
        suffix = processor.suffix(question).input_ids.repeat(self.batch_size, 1).to(self.model.device)
        sampling.setdefault("stop_token_ids", processor.stop_token_ids)
        video = None
        if self.pending is not None:  # the question sees the odd frame padded; the memory does not (unless kept)
            video = self._encode([np.concatenate([f, f]) for f in self.pending.frames], [self.pending.timestamp] * 2)
        tokens = self._ask(suffix, video, max_new_tokens, keep, processor.turn_end().input_ids[0].tolist(), sampling)
        answers = [processor.decode(row.tolist()).strip() for row in tokens]  # as the pipeline's answers
        return answers[0] if self.batch_size == 1 else answers

    def _ask(self, suffix_ids: Tensor, video: tuple | None, max_new_tokens: int, keep: bool,
             turn_end_ids: Sequence[int] | None, sampling: dict[str, Any]) -> Tensor:
        if suffix_ids.shape[0] != self.batch_size:
            raise StreamError(f"question has {suffix_ids.shape[0]} rows but the session holds {self.batch_size} streams")
        if keep and turn_end_ids is None:
            raise StreamError("ask_tokens(keep=True) needs turn_end_ids, the tokens that close the answer's turn")
        if keep and len(self.lanes) == 1 and self.batch_size > 1:
            # a stream must not be fed past its own stop token while the others still decode
            self.lanes = [select_rows(self.lanes[0], [row]) for row in range(self.batch_size)]
        suffixes = [ids for ids, _, _ in self._per_lane(suffix_ids, None, None)]
        videos = self._per_lane(*video) if video is not None else [None] * len(self.lanes)
        answers = []
        for lane, suffix, piece in zip(self.lanes, suffixes, videos):
            stream = lane if keep else snapshot(lane)
            if piece is not None:
                feed(self.model, stream, segments_from_tokens(self.model, stream, *piece))
            out = feed(self.model, stream, segments_from_tokens(self.model, stream, suffix), flush=True)
            logits = final_logits(self.model, out[-1:])[:, -1]
            tokens = self.model.decode(stream.model, logits, max_new_tokens, **sampling)
            if keep:
                self._close_turn(stream, tokens[0].tolist(), sampling.get("stop_token_ids") or [], turn_end_ids)
            answers.append(tokens)
        if keep:
            self.pending = None  # its padded pair is part of the kept turn now
        longest = max(a.shape[1] for a in answers)
        return torch.cat([torch.cat([a, a[:, -1:].expand(-1, longest - a.shape[1])], 1) for a in answers])

    def _close_turn(self, stream: StreamState, tokens: list[int], stops: Sequence[int], turn_end_ids: Sequence[int]) -> None:
        """Ends a kept answer as the chat template does: the last token if decoding ran out of max_new_tokens (it
        was generated, not fed), then turn_end_ids (which end the turn; a generated stop token is not fed)."""
        stream.model.decoding = False
        stream.previous_group = [None] * len(stream.previous_group)  # the video restarts after the answer
        closing = ([] if tokens[-1] in stops else [tokens[-1]]) + list(turn_end_ids)
        ids = torch.tensor([closing], device=self.model.device)
        feed(self.model, stream, segments_from_tokens(self.model, stream, ids))

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """The whole session (memory, caches, pending segments and frame) to one stream file, written atomically."""
        extra = {}
        if self.pending is not None:
            extra["pending_frames"] = torch.from_numpy(np.stack(self.pending.frames))
        info = dict(num_frames=self.num_frames, started=self.started, batch_size=self.batch_size,
                    pending_timestamp=None if self.pending is None else self.pending.timestamp,
                    fingerprint=model_fingerprint(self.model), last_time=self.last_time)
        save_stream(path, self.stream, info, extra)

    @classmethod
    def load(cls, path: str | Path, model: SpatialTTTForConditionalGeneration, processor: Any = None) -> "StreamSession":
        """A saved session on ``model``, its tensors on the model's device (wherever it was saved from)."""
        if read_stream_info(path)["fingerprint"] != model_fingerprint(model):
            raise StreamError(f"{path} was saved from another model or config; it cannot continue with this one")
        stream, meta, extra = load_stream(path, model.device)
        session = cls(model, processor, meta["batch_size"])
        session.lanes = [stream]
        session.num_frames, session.started = meta["num_frames"], meta["started"]
        if "pending_frames" in extra:
            session.pending = PendingFrame(list(extra["pending_frames"].numpy()), meta["pending_timestamp"])
        session.last_time = meta.get("last_time")
        return session

    # -- accounting -----------------------------------------------------------------------------------------

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held by the streams, by kind: fast weights, TTT pending inputs, window KV, anchor KV, queues."""
        sizes = dict(fast_weights=0, ttt_recent=0, window_kv=0, anchor_kv=0, queued=0)
        for stream in self.lanes:
            for layer in stream.model.layers:
                kv = sum(_bytes(t) for t in (layer.kv.keys, layer.kv.values))
                if layer.ttt is None:
                    sizes["anchor_kv"] += kv
                    continue
                sizes["window_kv"] += kv
                sizes["fast_weights"] += sum(_bytes(t) for t in _weight_tensors(layer.ttt.weights))
                if layer.ttt.recent is not None:
                    sizes["ttt_recent"] += sum(_bytes(t) for t in layer.ttt.recent if t is not None)
            for queue in stream.queues:
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
        """The chat's start (system turn, user turn opening) before the first frames or question."""
        if not self.started:
            self.started = True
            self.observe_tokens(self.processor.prefix().input_ids.repeat(self.batch_size, 1).to(self.model.device))

    def _encode(self, per_stream: list[np.ndarray], timestamps: list[float]) -> tuple[Tensor, Tensor, Tensor]:
        """input_ids, pixel_values_videos, video_grid_thw of frames (the same times for every stream)."""
        device = self.model.device
        target = pixel_target(self.model.model.visual.dtype, device)
        pieces = [self.processor.encode_frames(torch.as_tensor(f), timestamps, **target) for f in per_stream]
        pixels = [p.pixel_values_videos for p in pieces]
        pixels = pixels[0] if len(pixels) == 1 else torch.cat(pixels)  # one stream: the pinned tensor itself
        return (torch.cat([p.input_ids for p in pieces]).to(device),
                pixels.to(device, non_blocking=True),  # async from pinned memory; the model waits on the stream
                torch.cat([p.video_grid_thw for p in pieces]).to(device))

    def _per_lane(self, input_ids: Tensor, pixels: Tensor | None, grid: Tensor | None) -> list[tuple]:
        """A batch input split into each lane's rows (input_ids, pixel_values_videos, video_grid_thw)."""
        if len(self.lanes) == 1:
            return [(input_ids, pixels, grid)]
        rows = []
        for row in range(self.batch_size):
            row_pixels = None if pixels is None else pixels.view(self.batch_size, -1, pixels.shape[-1])[row]
            row_grid = None if grid is None else grid[row : row + 1] if len(grid) == self.batch_size else grid
            rows.append((input_ids[row : row + 1], row_pixels, row_grid))
        return rows


def model_fingerprint(model: SpatialTTTForConditionalGeneration) -> str:
    """Config plus a sample of every parameter: a stream saved from other weights or settings will not match
    (the kernels that run it are not part of it: a state continues under any of them)."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in EXECUTION_SETTINGS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, param in model.state_dict().items():
        digest.update(name.encode())
        digest.update(param.detach().flatten()[:8].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _bytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _weight_tensors(weights: FastWeights) -> list[Tensor]:
    return [weights.w0, weights.w1, weights.w2, *weights.norms, *(weights.momentum or ())]
