"""Qwen3-VL self-attention with an optional sliding window, used by anchor layers and inside TTT layers."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..ops.attention_gpu import causal_attention
from ..ops.decode_attention_triton import decode_attention_triton
from ..state import KVCache
from .norm import RMSNorm
from .rope import rope_qk


def causal_window_mask(q_start: int, q_len: int, k_start: int, k_len: int, window: int | None, device) -> Tensor:
    """Boolean [q_len, k_len] mask: query i sees keys j with i - window < j <= i (absolute token indices)."""
    q_pos = torch.arange(q_start, q_start + q_len, device=device)[:, None]
    k_pos = torch.arange(k_start, k_start + k_len, device=device)[None, :]
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    return mask


# The kernels a masked SDPA call (a small problem: see causal_attention) may use on CUDA. Left to choose, SDPA took
# cuDNN's attention, whose first masked call in a process took 1.3 s on an H200 (a stream's first question, session
# 18). The memory-efficient kernel takes the boolean mask with nothing to build; with grouped KV heads (which it
# does not take) SDPA's math kernel runs, whose [q, k] scores are small here. The CPU keeps SDPA's own choice.
MASKED_BACKENDS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def masked_attention(
    q: Tensor, k: Tensor, v: Tensor, q_start: int, k_start: int, window: int | None, block: int = 2048
) -> Tensor:
    """SDPA with an explicit mask, one block of queries at a time against only the keys it can see, so memory
    stays O(block * (window or sequence)) instead of O(sequence^2) on long prompts (the CPU path)."""
    outputs = []
    for q0 in range(0, q.shape[2], block):
        q1 = min(q0 + block, q.shape[2])
        first = q_start + q0  # absolute index of the block's first query
        lo = k_start if window is None else max(k_start, first - window + 1)
        hi = q_start + q1  # keys after the block's last query are never visible
        keys, values = k[:, :, lo - k_start : hi - k_start], v[:, :, lo - k_start : hi - k_start]
        mask = causal_window_mask(first, q1 - q0, lo, keys.shape[2], window, q.device)
        with sdpa_kernel(MASKED_BACKENDS) if q.is_cuda else contextlib.nullcontext():
            outputs.append(F.scaled_dot_product_attention(q[:, :, q0:q1], keys, values, attn_mask=mask, enable_gqa=True))
    return torch.cat(outputs, dim=2)


def decode_attention(q: Tensor, keys: Tensor, values: Tensor, last: Tensor) -> Tensor:
    """Attention of one query token per row q [B, H, 1, hd] over the slots 0..``last`` ([1]; all L slots where
    ``last`` >= L) of static buffers keys/values [B, H_kv, L, hd] (spatial_ttt.static_decode) -> [B, H, 1, hd].
    The one place that picks its kernel: on CUDA the Triton split-K kernel
    (:mod:`spatial_ttt.ops.decode_attention_triton`, which reads only the visible slots, once per KV head),
    elsewhere the reference below; both run inside static_decode's compiled, graph-captured step."""
    kernel = decode_attention_triton if q.is_cuda else decode_attention_reference
    return kernel(q, keys, values, last)


def decode_attention_reference(q: Tensor, keys: Tensor, values: Tensor, last: Tensor) -> Tensor:
    """:func:`decode_attention` in PyTorch (the CPU kernel, and the reference of the Triton one).

    Written as products summed in fp32 rather than matmuls: compiled, each is one reduction kernel that streams a
    buffer once, split over its length (a decode step is bandwidth-bound; a matmul with 2 rows and a 100k-long
    inner dimension would keep few SMs busy), with fp32 scores as SDPA keeps them. Query head h uses KV head
    h // group (as SDPA's enable_gqa), so the keys are not repeated."""
    batch, heads, _, dim = q.shape
    rows = q.view(batch, keys.shape[1], heads // keys.shape[1], 1, dim).float()  # [B, H_kv, group, 1, hd]
    scores = (rows * keys[:, :, None].float()).sum(-1) * dim**-0.5  # [B, H_kv, group, L]
    visible = torch.arange(keys.shape[2], device=keys.device) <= last
    probs = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
    out = (probs[..., None] * values[:, :, None].float()).sum(-2)  # [B, H_kv, group, hd]
    return out.view(batch, heads, 1, dim).to(q.dtype)


class Attention(nn.Module):
    """Grouped-query attention with per-head q/k RMSNorm and 3D rope; parameter names as in Qwen3-VL. ``kernel``, the
    model's FastWeightKernel (set by the model), compiles the rope where it runs the graphed kernel, as the norms."""

    kernel = None

    def __init__(self, config) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q [B, S, H, hd] and k [B, S, H_kv, hd] after their norms; v [B, S, H_kv, hd]."""
        shape = (*x.shape[:-1], -1, self.head_dim)
        q = self.q_norm(self.q_proj(x).view(shape))
        k = self.k_norm(self.k_proj(x).view(shape))
        v = self.v_proj(x).view(shape)
        return q, k, v

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None,
        start: int,
        window: int | None,
        after_cache: str = "flash",
    ) -> Tensor:
        """Attention output [B, S, H*hd] (before o_proj) for queries at absolute indices start..start+S-1.
        ``after_cache``: how the GPU runs queries whose keys end with them ("flash" or "split", see
        :func:`spatial_ttt.ops.attention_gpu.causal_attention`; anchors pass ``config.anchor_attention``)."""
        rope = rope_qk if self.kernel is None else self.kernel.fused_for_inference(rope_qk, q)
        q, k = rope(q, k, cos, sin)
        v = v.transpose(1, 2)
        k_start = start
        if cache is not None:
            k, v, k_start = cache.append(k, v)
        out = causal_attention(q, k, v, start, k_start, window, after_cache)  # flash / flex / split on the GPU
        if out is None:
            out = masked_attention(q, k, v, start, k_start, window)
        return out.transpose(1, 2).flatten(2)

    def attend_static(
        self, q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, slot: Tensor,
        last: Tensor,
    ) -> Tensor:
        """``attend`` for one token per row over static buffers keys/values [B, H_kv, L, hd]: its key and value
        go to ``slot`` [1], then it sees slots 0..``last`` [1] (its own included); [B, 1, H*hd]."""
        q, keys[:, :, slot] = rope_qk(q, k, cos, sin)  # index_put_: written in place, also compiled
        values[:, :, slot] = v.transpose(1, 2)
        return decode_attention(q, keys, values, last).transpose(1, 2).flatten(2)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None, start: int, after_cache: str = "flash"
    ) -> Tensor:
        q, k, v = self.project(x)
        return self.o_proj(self.attend(q, k, v, cos, sin, cache, start, window=None, after_cache=after_cache))

    def decode_static(self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, index: Tensor) -> Tensor:
        """``forward`` for one token per row at absolute index ``index`` [1] over a full cache's buffers
        keys/values [B, H_kv, capacity, hd] (spatial_ttt.static_decode), where slot i holds token i."""
        q, k, v = self.project(x)
        return self.o_proj(self.attend_static(q, k, v, cos, sin, keys, values, index, index))
