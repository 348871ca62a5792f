"""Rotary position embedding helpers (cos/sin come from the Qwen3-VL 3D rope)."""

import torch
from torch import Tensor


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, H, S, D]; cos/sin [B, S, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def apply_partial_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rope on the first cos.shape[-1] channels of each head of x [B, H, S, d]; the rest pass through."""
    width = cos.shape[-1]
    if width == x.shape[-1]:
        return apply_rope(x, cos, sin)
    return torch.cat([apply_rope(x[..., :width], cos, sin), x[..., width:]], dim=-1)


def rope_qk(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """An attention's queries [B, S, H, hd] and keys [B, S, H_kv, hd] (the projections' layout) -> both roped,
    heads first: [B, H, S, hd], [B, H_kv, S, hd]. One function so that the model's kernel can compile the pair into
    one pass where its graphed kernel runs (Attention.attend); eager, it is Qwen3-VL's rope op for op."""
    return apply_rope(q.transpose(1, 2), cos, sin), apply_rope(k.transpose(1, 2), cos, sin)
