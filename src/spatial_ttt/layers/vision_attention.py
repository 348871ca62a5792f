"""Qwen3-VL's vision attention with a video's frames attended in one call.

The vision tower attends within each frame (the chunks of ``cu_seqlens``). transformers' SDPA path runs one
``scaled_dot_product_attention`` per chunk, plus a transposed copy of each output and a concatenation: at 1024
frames of the 2B shape, 24 layers x 512 frames = 12k attention calls and 12k copies. The frames of a video all
have the same size, so here they go in as one batch [frames, heads, tokens, head_dim]: the same attention of
each frame, one call per layer. Anything else (chunks of several sizes, flash-attention varlen, attention
dropout) takes transformers' forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionAttention, apply_rotary_pos_emb_vision


class FrameBatchedVisionAttention(Qwen3VLVisionAttention):
    """Same parameters and results as Qwen3VLVisionAttention (``attn`` of every vision block)."""

    def forward(
        self,
        hidden_states: Tensor,
        cu_seqlens: Tensor,
        position_embeddings: tuple[Tensor, Tensor] | None = None,
        max_seqlen: int | None = None,
        **kwargs,
    ) -> Tensor:
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()  # (transformers' forward reads them too)
        equal = len(set(lengths)) == 1
        if not equal or self.config._attn_implementation != "sdpa" or (self.training and self.attention_dropout):
            return super().forward(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
        seq_length, frames, tokens = hidden_states.shape[0], len(lengths), lengths[0]
        q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        # [S, heads, hd] -> [frames, heads, tokens, hd]: views; each frame's rows are those of its chunk
        q, k, v = (t.view(frames, tokens, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        return self.proj(out.transpose(1, 2).reshape(seq_length, -1))
