"""Causal (optionally sliding-window) attention on the GPU without masks built in Python.

Why: the CPU path builds a boolean [q_len, k_len] mask and hands it to SDPA, which at 86k tokens is a 7.5 GB
mask and forces SDPA off its flash kernel. Here, on CUDA:

* square causal prefill with no effective window -> SDPA ``is_causal=True`` (flash kernel, GQA native);
* queries that follow a full KV cache (a prompt prefilled in pieces: the keys end with the queries) -> SDPA's
  flash kernel with the causal diagonal aligned bottom-right (``causal_lower_right``), GQA native where the flash
  kernel takes it (else KV heads repeated to the query heads: a copy of the whole cache per call);
  flex_attention measured ~4x slower here (1.2 s of a 1024-frame prefill on an H100);
* with ``after_cache="split"`` (``config.anchor_attention``), queries whose keys end with them (after a cache, or
  the square) run in tiles of SPLIT_TILE queries as cuDNN calls of two fixed shapes without the bottom-right mask,
  merged by log-sum-exp (:func:`attention_after_cache_split`; too few rows for a tile run flash): cuDNN ran a square
  causal call at 621 TFLOP/s on an H100 but the bottom-right-masked pieces at 224, flash's pieces at 340
  (benchmarks/RESULTS.md, "Anchor attention backends");
* anything else (a sliding window, or queries that follow a KV cache) -> ``flex_attention`` with a block mask
  built directly from the band's geometry: for each 128x128 tile, whether it is empty, partially or fully
  inside ``k_abs <= q_abs`` and ``k_abs > q_abs - window``. Work scales with the band, not with q_len * k_len;
* tiny problems (decode, short prompts) keep the boolean mask (cheaper than a compiled kernel launch).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK = 128
SMALL = 1 << 20  # q_len * k_len under which the boolean-mask SDPA path is used
AFTER_CACHE = ("flash", "split")  # how queries after a full cache run (config.anchor_attention)
HALF = (torch.float16, torch.bfloat16)
SPLIT_TILE, SPLIT_KEYS = 8192, 16384  # query rows and keys per cuDNN call of "split" (attention_after_cache_split)

_flex = None


def _flex_attention():
    global _flex
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _flex = torch.compile(flex_attention)
    return _flex


def band_block_mask(q_len: int, k_len: int, q_start: int, k_start: int, window: int | None, device, block: int = BLOCK):
    """flex_attention BlockMask for: query at absolute index q_start+i sees key k_start+j iff
    k_start+j <= q_start+i and (window is None or k_start+j > q_start+i-window).

    It depends on the starts only through their difference, so it is built once per geometry and reused: a stream
    asks for the same one every piece (same piece length, a full window), and building it costs ~1 ms of small
    kernels and Python per call, more than the attention of a piece itself (measured on an H100)."""
    win = window if window is not None else q_start + q_len + k_len + 1
    return _band_block_mask(q_len, k_len, q_start - k_start, win, str(torch.device(device)), block)


@functools.lru_cache(maxsize=64)
def _band_block_mask(q_len: int, k_len: int, delta: int, win: int, device: str, block: int):
    from torch.nn.attention.flex_attention import BlockMask

    nq, nk = -(-q_len // block), -(-k_len // block)
    qi = torch.arange(nq, device=device)
    ki = torch.arange(nk, device=device)
    q_lo = qi * block + delta  # query rows counted from the first key
    q_hi = torch.clamp((qi + 1) * block, max=q_len) - 1 + delta
    k_lo = ki * block
    k_hi = torch.clamp((ki + 1) * block, max=k_len) - 1
    lo = k_lo[None, :] - q_hi[:, None]  # min over the tile of (k_abs - q_abs)
    hi = k_hi[None, :] - q_lo[:, None]  # max
    touched = (lo <= 0) & (hi > -win)
    full = (hi <= 0) & (lo > -win)
    if q_len % block:  # ragged edge tiles are left to the mask function
        full[-1, :] = False
    if k_len % block:
        full[:, -1] = False
    partial = touched & ~full

    def indices(sel: Tensor) -> tuple[Tensor, Tensor]:
        count = sel.sum(-1).to(torch.int32)
        order = torch.argsort(sel.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
        return count[None, None], order[None, None]

    offsets = torch.tensor([delta, win], device=device)

    def mask_mod(b, h, q_idx, kv_idx):
        q_rel = q_idx + offsets[0]
        return (kv_idx <= q_rel) & (kv_idx > q_rel - offsets[1])

    kv_num, kv_idx = indices(partial)
    full_num, full_idx = indices(full)
    return BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(q_len, k_len)
    )


def causal_attention(
    q: Tensor, k: Tensor, v: Tensor, q_start: int, k_start: int, window: int | None, after_cache: str = "flash"
) -> Tensor | None:
    """Attention of q [B, H, Lq, hd] over k, v [B, H_kv, Lk, hd] (absolute starts q_start, k_start).
    ``after_cache`` (one of :data:`AFTER_CACHE`): how queries run whose keys end with them (the square, or after a
    full cache) in fp16/bf16: "flash" (SDPA's flash kernel) or "split" (:func:`attention_after_cache_split`;
    where autograd records, as in training, "flash": split's merge has no gradient).
    Returns None where the caller's boolean-mask path should be used (not CUDA, or small problems)."""
    if after_cache not in AFTER_CACHE:
        raise ValueError(f"anchor_attention must be one of {'/'.join(AFTER_CACHE)}, not {after_cache!r}")
    q_len, k_len = q.shape[2], k.shape[2]
    if not q.is_cuda or q_len * k_len <= SMALL:
        return None
    no_window = window is None or window >= q_start + q_len - k_start
    ends_together = no_window and k_start + k_len == q_start + q_len
    # "split" needs cuDNN's fp16/bf16 kernels: in fp32 it runs as "flash" does (the square, else flex), by
    # construction. An error of the cuDNN op itself is not caught: a caller who chose "split" (a benchmark above
    # all) must not be handed the flash path's time or numbers without knowing.
    if ends_together and after_cache == "split" and q.dtype in HALF and not recording(q, k, v):
        return attention_after_cache_split(q, k, v)
    if no_window and q_len == k_len and q_start == k_start:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if ends_together and q.dtype in HALF:
        return attention_after_cache(q, k, v)
    mask = band_block_mask(q_len, k_len, q_start, k_start, window, q.device)
    return _flex_attention()(q, k, v, block_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


def recording(*tensors: Tensor) -> bool:
    """Whether autograd records a call on these tensors."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def attention_after_cache(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention of the last Lq positions q [B, H, Lq, hd] over Lk >= Lq keys k, v [B, H_kv, Lk, hd] (the
    diagonal aligned bottom-right): SDPA's ``causal_lower_right``, which runs the flash kernel with grouped KV heads
    as they are (``enable_gqa``); where flash cannot run, over keys repeated to the query heads."""
    from torch.backends.cuda import SDPAParams, can_use_flash_attention
    from torch.nn.attention.bias import causal_lower_right

    gqa = q.shape[1] != k.shape[1]
    # the probe SDPA's causal_lower_right dispatch makes itself (is_causal False: the mask carries the causality;
    # with True, flash refuses Lq != Lk, and every piece after a cache repeated the whole cache, session 15)
    if gqa and not can_use_flash_attention(SDPAParams(q, k, v, None, 0.0, False, True)):
        group = q.shape[1] // k.shape[1]
        k, v, gqa = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(q.shape[2], k.shape[2]), enable_gqa=gqa)


def attention_with_lse(q: Tensor, k: Tensor, v: Tensor, causal: bool, kernel: str = "cudnn") -> tuple[Tensor, Tensor]:
    """Attention of q [B, H, Lq, hd] over k, v [B, H, Lk, hd] (as many KV heads as query heads; ``causal``: the
    square's top-left diagonal) and its log-sum-exp of the scaled scores, [B, H, Lq] fp32. ``kernel`` on CUDA:
    "cudnn" or "flash"; elsewhere the CPU's flash kernel (the same merge, testable on the CPU)."""
    if not q.is_cuda:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=None)
    elif kernel == "cudnn":
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False)[:2]
    else:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False)[:2]
    return out, lse.reshape(q.shape[:3])  # cuDNN gives [B, H, Lq, 1] ([B, H, Lq] in older torch)


def attention_after_cache_split(q: Tensor, k: Tensor, v: Tensor, tile: int = SPLIT_TILE,
                                key_tile: int = SPLIT_KEYS) -> Tensor:
    """:func:`attention_after_cache` with cuDNN handed problems of two fixed shapes only, none with the
    bottom-right mask. Query rows run in tiles of ``tile`` (a last tile of at least 3/4 of that is padded to it, a
    shorter rest runs :func:`attention_after_cache`, flash); a tile attends to
    * its own keys (the last it sees, as many as its rows), causal: cuDNN, the keys repeated to the query heads;
    * the keys before them in whole tiles of ``key_tile``, unmasked: cuDNN, each KV head's query heads stacked along
      the query axis (no mask, so the rows are independent) over a contiguous copy of the key tile, so the cache is
      never repeated and every call has the same shape and strides whatever the cache's length or capacity;
    * the keys before those that fill no key tile, unmasked: flash with its log-sum-exp;
    merged by log-sum-exp in fp32: out = sum_i out_i * exp(lse_i - lse), lse = logsumexp_i lse_i, the running sum
    rescaled to each new lse, one part's output held at a time.
    Why fixed shapes: cuDNN builds a plan per new shape and strides (~50 ms on the host) and its first call at a new
    query length took 0.5-0.85 s (H200, benchmarks/cudnn_plans.py, bench_anchor_attention.py), so with the cache's
    length or a piece's in the shape a stream paid that at every piece (session 8: 3x slower); a prompt's pieces
    (whole frame groups) have a length of the video's geometry, so the tiles are padded instead."""
    if recording(q, k, v):
        raise ValueError("anchor_attention='split' is for inference: its merge needs each part's log-sum-exp, "
                         "which SDPA's kernels return without a gradient (training runs 'flash')")
    heads, q_len = q.shape[1], q.shape[2]
    kv_heads, k_len = k.shape[1], k.shape[2]
    out = torch.empty_like(q)
    row = 0
    while row < q_len:
        rows = min(tile, q_len - row)
        if 4 * rows < 3 * tile:  # padding would cost more than cuDNN's speed buys back: flash
            out[:, :, row:] = attention_after_cache(q[:, :, row:], k, v)
            break
        end = k_len - q_len + row + rows  # the tile's last key + 1
        out[:, :, row : row + rows] = _split_tile(q[:, :, row : row + rows], k[:, :, :end], v[:, :, :end],
                                                  heads // kv_heads, tile, key_tile)
        row += rows
    return out


def _split_tile(q: Tensor, k: Tensor, v: Tensor, group: int, tile: int, key_tile: int) -> Tensor:
    """Queries q [B, H, rows, hd] (rows <= tile) whose keys k, v [B, H_kv, Lk, hd] end with them."""
    batch, heads, rows, head_dim = q.shape
    padded = _padded(q, tile)  # rows past ``rows`` see only padding; they are dropped
    keys, values = (_padded(t[:, :, -rows:].repeat_interleave(group, 1), tile) for t in (k, v))
    out, lse = attention_with_lse(padded, keys, values, causal=True)
    before = k.shape[2] - rows
    if before == 0:
        return out[:, :, :rows]
    total = out.float()
    stacked = padded.view(batch, heads // group, group * tile, head_dim)  # query head h = kv_head * group + j
    ragged = before % key_tile
    parts = [(0, ragged, "flash")] if ragged else []
    parts += [(start, start + key_tile, "cudnn") for start in range(ragged, before, key_tile)]
    for start, end, kernel in parts:
        piece_k, piece_v = k[:, :, start:end], v[:, :, start:end]
        if kernel == "cudnn":
            piece_k, piece_v = piece_k.contiguous(), piece_v.contiguous()
        out, piece_lse = attention_with_lse(stacked, piece_k, piece_v, causal=False, kernel=kernel)
        out, piece_lse = out.reshape(padded.shape), piece_lse.reshape(batch, heads, tile)
        merged = torch.logaddexp(lse, piece_lse)
        total.mul_((lse - merged).exp_().unsqueeze(-1)).addcmul_(out, (piece_lse - merged).exp_().unsqueeze(-1))
        lse = merged
    return total[:, :, :rows].to(q.dtype)


def _padded(t: Tensor, tile: int) -> Tensor:
    """t [B, H, rows, hd] (rows <= tile) as a contiguous [B, H, tile, hd], zero rows after its own (a full tile is
    only made contiguous: no zero fill on the common path)."""
    if t.shape[2] == tile:
        return t.contiguous()
    out = t.new_zeros(*t.shape[:2], tile, t.shape[3])
    out[:, :, : t.shape[2]] = t
    return out
