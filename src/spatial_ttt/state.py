"""All state a model keeps between calls, in one place.

A :class:`ModelState` is what a prefill leaves behind and what decoding (and streaming) continues from:
per TTT layer the fast weights, their momentum and the recent tokens' update inputs, plus the sliding-window
KV cache; per anchor layer the full KV cache; and the position counters shared by all layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .ops.fast_weight import FastWeights, TokenStream


@dataclass
class KVCache:
    """Keys/values [B, H_kv, L, hd] of the last L tokens (all tokens when ``window`` is None)."""

    window: int | None
    keys: Tensor | None = None
    values: Tensor | None = None
    end: int = 0  # absolute index of the token after the last cached one

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, int]:
        """Adds new keys/values; returns all keys/values the new queries may see and the first one's index."""
        cached = 0 if self.keys is None else self.keys.shape[2]
        first = self.end - cached
        if cached:
            keys = torch.cat([self.keys, keys], dim=2)
            values = torch.cat([self.values, values], dim=2)
        self.end = first + keys.shape[2]
        keep = keys.shape[2] if self.window is None else min(self.window, keys.shape[2])
        self.keys, self.values = keys[:, :, -keep:], values[:, :, -keep:]
        return keys, values, first


@dataclass
class TTTState:
    """Fast-weight memory of one TTT layer.

    ``recent`` holds the update inputs of the last max(chunk, pending) tokens; its trailing ``pending`` tokens
    have not been used in an update yet. The reference's decode re-reads the prompt's last chunk from it.
    """

    weights: FastWeights
    recent: TokenStream | None = None
    pending: int = 0

    def remember(self, tokens: TokenStream, pending: int, chunk_size: int) -> None:
        merged = tokens if self.recent is None else TokenStream.cat([self.recent, tokens])
        self.recent = merged.slice(-max(chunk_size, pending))
        self.pending = pending


@dataclass
class LayerState:
    """One decoder layer's state: a KV cache, plus fast weights for TTT layers."""

    kv: KVCache
    ttt: TTTState | None = None


@dataclass
class ModelState:
    """Everything a model carries from one call to the next."""

    layers: list[LayerState]
    num_tokens: int = 0  # tokens seen so far (absolute index of the next token)
    next_position: int = 0  # next text position of the 3D rope (max position so far + 1)
    decoding: bool = False  # switched to the reference's decode rule (see TTTAttention)


@dataclass
class Segment:
    """Tokens travelling up the layers of a stream: a run of text or exactly one video frame group.

    ``hidden`` is the input of the layer whose queue holds the segment. A frame group carries its grid and
    deepstack features; ``projected`` caches its projections at that layer once computed for a neighbour's conv.
    """

    hidden: Tensor  # [B, n, D]
    cos: Tensor
    sin: Tensor
    start: int  # absolute index of the first token
    grid_hw: tuple[int, int] | None = None  # set for a video frame group
    deepstack: list[Tensor] | None = None  # per level [B, n, D], frame groups only
    projected: object | None = None


@dataclass
class StreamState:
    """A stream through the model: the model state plus, per layer, the segments waiting to enter it and the
    previous frame group's pre-conv features (the temporal conv needs both neighbours of a group)."""

    model: ModelState
    queues: list[list[Segment]]
    previous_group: list[tuple[Tensor, Tensor, Tensor] | None]
    num_frame_groups: int = 0
