"""All state a model keeps between calls, in one place.

A :class:`ModelState` is what a prefill leaves behind and what decoding (and streaming) continues from:
per TTT layer the fast weights, their momentum and the recent tokens' update inputs, plus the sliding-window
KV cache; per anchor layer the full KV cache; and the position counters shared by all layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from .ops.fast_weight_memory import FastWeightMemory


@dataclass
class KVCache:
    """Keys/values [B, H_kv, L, hd] of the last L tokens (all tokens when ``window`` is None).

    A full cache grows inside a buffer (in blocks of GROWTH tokens), written in place: appending costs the new tokens
    only, not a copy of the whole cache (which would make a long stream or a long decode quadratic). A caller that
    knows how many tokens are coming (a prompt, then its decode) announces them (``plan``): the first allocation
    makes room for all of them, one buffer never copied, allocated when the layer first needs it. A copy of
    this object (a snapshot) shares the buffer; its appends write past the original's ``keys`` view, which they
    never touch, and the original overwrites them when it advances (a snapshot lives only until then, which
    spatial_ttt.session_state enforces).
    A window cache is small and is re-assembled on each append; it keeps a copy of its last W keys, never a view
    of a prompt's keys (which would keep the whole prompt's keys alive).
    """

    GROWTH: ClassVar[int] = 16384  # appends (how many tokens follow is unknown) make room in blocks of GROWTH
    # A planned length is rounded up to whole BLOCKs: little slack (at the 2B shape 1024 tokens of 7 anchor caches
    # are 28 MB; a GROWTH block, 0.44 GB, held at the peak of a long prefill), and prompts of nearby lengths share
    # one buffer shape (the compiled static decode step specialises on it).
    BLOCK: ClassVar[int] = 1024

    window: int | None
    keys: Tensor | None = None  # a view of the first L positions of the buffer (full caches)
    values: Tensor | None = None
    end: int = 0  # absolute index of the token after the last cached one
    key_buffer: Tensor | None = field(default=None, repr=False, compare=False)
    value_buffer: Tensor | None = field(default=None, repr=False, compare=False)
    planned: int = field(default=0, compare=False)  # tokens announced by ``plan``

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, int]:
        """Adds new keys/values; returns all keys/values the new queries may see and the first one's index."""
        cached = 0 if self.keys is None else self.keys.shape[2]
        first = self.end - cached
        self.end += keys.shape[2]
        if self.window is None:
            self.keys, self.values = self._grow(cached, keys, values)
            return self.keys, self.values, first
        if cached:
            keys = torch.cat([self.keys, keys], dim=2)
            values = torch.cat([self.values, values], dim=2)
        keep = min(self.window, keys.shape[2])
        self.keys, self.values = keys[:, :, -keep:], values[:, :, -keep:]
        if keys.shape[2] > 2 * keep:  # a long prompt: copy the window out (a decode step's source is W + 1)
            self.keys, self.values = self.keys.clone(), self.values.clone()
        return keys, values, first

    def _grow(self, cached: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        length = cached + keys.shape[2]
        self.reserve(length, keys)
        self.key_buffer[:, :, cached:length] = keys
        self.value_buffer[:, :, cached:length] = values
        return self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]

    def plan(self, length: int) -> None:
        """Announces that the cache will hold ``length`` tokens in all: the allocation that first needs room makes
        room for all of them, in whole BLOCKs (instead of GROWTH tokens at a time)."""
        self.planned = max(self.planned, length)

    def reserve(self, length: int, like: Tensor) -> None:
        """Makes the buffer hold at least ``length`` tokens, keeping the cached ones (a full cache; ``like``: a
        [B, H_kv, *, hd] tensor of the cache's dtype and device). A new buffer belongs to this object alone."""
        if self.key_buffer is not None and length <= self.key_buffer.shape[2]:
            return
        # Whole blocks: slack stays under one block, and few distinct buffer strides means few recompiles of
        # the compiled GPU attention (every stride change cost one: 26 of them took 7.4 s instead of 5.5 s).
        length, block = (self.planned, self.BLOCK) if length <= self.planned else (length, self.GROWTH)
        capacity = -(-length // block) * block
        with torch.inference_mode(False):  # a normal tensor: a state filled under inference_mode stays writable
            key_buffer = like.new_empty(*like.shape[:2], capacity, like.shape[3])
            value_buffer = like.new_empty(*like.shape[:2], capacity, like.shape[3])
        if self.keys is not None:
            cached = self.keys.shape[2]
            key_buffer[:, :, :cached] = self.keys
            value_buffer[:, :, :cached] = self.values
            self.keys, self.values = key_buffer[:, :, :cached], value_buffer[:, :, :cached]
        self.key_buffer, self.value_buffer = key_buffer, value_buffer


@dataclass
class LayerState:
    """One decoder layer's state: a KV cache, plus fast weights for TTT layers."""

    kv: KVCache
    ttt: FastWeightMemory | None = None


@dataclass
class ModelState:
    """Everything a model carries from one call to the next."""

    layers: list[LayerState]
    num_tokens: int = 0  # tokens seen so far (absolute index of the next token)
    next_position: int = 0  # next text position of the 3D rope (max position so far + 1)
    decoding: bool = False  # the reference's decode rule is in force (see spatial_ttt.ops.fast_weight_memory)

    def plan(self, tokens: int) -> None:
        """Announces ``tokens`` more tokens to every full (anchor) cache (KVCache.plan). A prefill that announces
        its prompt (and the tokens its decode will feed) allocates each buffer once, at its final size rounded to
        a KVCache.BLOCK, when the layer first needs it: growing GROWTH tokens at a time copies the cache at every
        block, holds the old and the new buffer at once, and ends up to a GROWTH block larger."""
        for layer in self.layers:
            if layer.kv.window is None:
                layer.kv.plan(layer.kv.end + tokens)

    def begin_decode(self) -> None:
        """Switches every TTT layer to the reference's decode rule (its last C tokens become pending again)."""
        self.decoding = True
        for layer in self.layers:
            if layer.ttt is not None:
                layer.ttt.begin_decode()

