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
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK = 128
SMALL = 1 << 20  # q_len * k_len under which the boolean-mask SDPA path is used
AFTER_CACHE = ("flash", "split")  # how queries after a full cache run (config.anchor_attention)
HALF = (torch.float16, torch.bfloat16)
SPLIT_TILE, SPLIT_KEYS = 8192, 16384  # query rows and keys per cuDNN call of "split" (attention_after_cache_split)
WINDOW_TILE, WINDOW_TILES = 2048, 2  # rows per tile and tiles per cuDNN call of the window's "split"
IN_WINDOW = ("flex", "split")  # how a sliding window runs (config.window_attention)
Band = Callable[[Tensor, Tensor, Tensor, int], Tensor]  # rows whose keys end with them, and the keys before them

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
    q: Tensor, k: Tensor, v: Tensor, q_start: int, k_start: int, window: int | None, after_cache: str = "flash",
    in_window: str = "flex",
) -> Tensor | None:
    """Attention of q [B, H, Lq, hd] over k, v [B, H_kv, Lk, hd] (absolute starts q_start, k_start).
    ``after_cache`` (one of :data:`AFTER_CACHE`): how queries run whose keys end with them (the square, or after a
    full cache) in fp16/bf16: "flash" (SDPA's flash kernel) or "split" (:func:`attention_after_cache_split`;
    where autograd records, as in training, "flash": split's merge has no gradient).
    ``in_window`` (one of :data:`IN_WINDOW`): the same for a sliding window whose keys end with the queries: "flex"
    or "split" (:func:`attention_in_window_split`; "flex" where autograd records).
    Returns None where the caller's boolean-mask path should be used (not CUDA, or small problems)."""
    if after_cache not in AFTER_CACHE:
        raise ValueError(f"anchor_attention must be one of {'/'.join(AFTER_CACHE)}, not {after_cache!r}")
    if in_window not in IN_WINDOW:
        raise ValueError(f"window_attention must be one of {'/'.join(IN_WINDOW)}, not {in_window!r}")
    q_len, k_len = q.shape[2], k.shape[2]
    if not q.is_cuda or q_len * k_len <= SMALL:
        return None
    no_window = window is None or window >= q_start + q_len - k_start
    keys_end_with_queries = k_start + k_len == q_start + q_len
    ends_together = no_window and keys_end_with_queries
    # "split" needs cuDNN's fp16/bf16 kernels: in fp32 it runs as "flash" / "flex" do, by construction. An error of
    # the cuDNN op itself is not caught: a caller who chose "split" (a benchmark above all) must not be handed the
    # other path's time or numbers without knowing.
    inference_half = q.dtype in HALF and not recording(q, k, v)
    if ends_together and after_cache == "split" and inference_half:
        return attention_after_cache_split(q, k, v)
    if not no_window and keys_end_with_queries and in_window == "split" and inference_half:
        return attention_in_window_split(q, k, v, q_start - k_start, window, functools.partial(_flex_band, window=window))
    if no_window and q_len == k_len and q_start == k_start:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if ends_together and q.dtype in HALF:
        return attention_after_cache(q, k, v)
    mask = band_block_mask(q_len, k_len, q_start, k_start, window, q.device)
    return _flex_attention()(q, k, v, block_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


def _flex_band(q: Tensor, k: Tensor, v: Tensor, before: int, window: int) -> Tensor:
    """The window through flex_attention for rows q whose keys k, v end with them, ``before`` keys before them."""
    mask = band_block_mask(q.shape[2], k.shape[2], before, 0, window, q.device)
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


def attention_in_window_split(q: Tensor, k: Tensor, v: Tensor, before: int, window: int, band: Band,
                              tile: int = WINDOW_TILE, tiles: int = WINDOW_TILES) -> Tensor:
    """Sliding-window attention of q [B, H, Lq, hd] over keys k, v [B, H_kv, before + Lq, hd] that end with the
    queries (query row i is key ``before + i``; it sees the keys j with i + before - window < j <= i + before), by
    cuDNN on problems of three fixed shapes. Rows run in calls of ``tiles`` tiles of ``tile`` (< window) rows; a
    tile starting at key r sees the keys [r - window + 1, r + tile), in three parts merged by log-sum-exp in fp32:
    * the tile's own ``tile`` keys, causal (the diagonal);
    * the window - 1 - tile keys before those, which every row sees: unmasked, each KV head's query heads stacked;
    * the ``tile`` keys before those, of which row i sees the last tile - i: a causal square once rows and keys are
      both reversed (no kernel masks the upper triangle).
    Rows without window - 1 keys before their tile (a prompt's first window), and what is left after the calls
    when it fills less than half a call, run ``band`` (same arguments as this function's first four: the flex
    path on CUDA); a longer rest is padded to a whole call.
    Why: flex_attention ran the TTT layers' window at ~225 TFLOP/s (0.174 s of a 1024-frame prompt, session 24);
    cuDNN's causal call ran at ~600 (session 7). Why fixed shapes: see :func:`attention_after_cache_split`."""
    if recording(q, k, v):
        raise ValueError("window_attention='split' is for inference: its merge needs each part's log-sum-exp, "
                         "which SDPA's kernels return without a gradient (training runs 'flex')")
    if not 0 < tile < window:
        raise ValueError(f"the window's tile must be in 1..{window - 1}, not {tile}")
    q_len, rows = q.shape[2], tile * tiles
    first = min(q_len, -(-max(window - 1 - before, 0) // tile) * tile)  # rows whose tile has all its window keys
    out = torch.empty_like(q)
    if first:
        out[:, :, :first] = band(q[:, :, :first], k[:, :, : before + first], v[:, :, : before + first], before)
    row = first
    while row < q_len:
        if 2 * (q_len - row) < rows:  # too few to pad: the band's kernel
            lo = row + before - window + 1
            out[:, :, row:] = band(q[:, :, row:], k[:, :, lo:], v[:, :, lo:], window - 1)
            break
        end = min(row + rows, q_len)
        out[:, :, row:end] = _window_tiles(q[:, :, row:end], k, v, row + before, window, tile, tiles)
        row = end
    return out


def _window_tiles(q: Tensor, k: Tensor, v: Tensor, first: int, window: int, tile: int, tiles: int) -> Tensor:
    """Rows q [B, H, n, hd] (n <= tile * tiles) whose first is key ``first`` (>= window - 1) of k, v [B, H_kv, L,
    hd], as :func:`attention_in_window_split` describes: three cuDNN calls over ``tiles`` tiles batched."""
    batch, heads, rows, head_dim = q.shape
    kv_heads = k.shape[1]
    group, size, full = heads // kv_heads, tile * tiles, window - 1 - tile
    span = window - 1 + size  # the keys of the call's tiles: [first - window + 1, first + size)
    keys, values = (t[:, :, first - window + 1 : first + size] for t in (k, v))
    if keys.shape[2] < span:  # a last call padded: its padding rows see the padding keys only
        keys, values = _padded(keys, span), _padded(values, span)

    def per_tile(t: Tensor, flip: bool = False, repeat: int = 1) -> Tensor:
        """[B, h, tiles * tile, hd] -> [B * tiles, h * repeat, tile, hd], each head repeated, rows reversed."""
        t = t.unflatten(2, (tiles, tile)).transpose(1, 2)
        t = t.repeat_interleave(repeat, dim=2) if repeat > 1 else t
        return (t.flip(3) if flip else t).flatten(0, 1).contiguous()  # cuDNN's plan is per shape and strides

    q = _padded(q, size)
    q_tiles = per_tile(q)
    own = attention_with_lse(q_tiles, per_tile(keys[:, :, window - 1 :], repeat=group),
                             per_tile(values[:, :, window - 1 :], repeat=group), causal=True)
    out, lse = attention_with_lse(per_tile(q, flip=True), per_tile(keys[:, :, :size], True, group),
                                  per_tile(values[:, :, :size], True, group), causal=True)
    parts = [own, (out.flip(2), lse.flip(2))]
    if full:
        def seen_by_all(t: Tensor) -> Tensor:  # each tile's keys before its own: [B * tiles, H_kv, full, hd]
            t = t[:, :, tile : tile + (tiles - 1) * tile + full].unfold(2, full, tile)  # [B, H_kv, tiles, hd, full]
            return t.permute(0, 2, 1, 4, 3).flatten(0, 1).contiguous()

        stacked = q_tiles.view(batch * tiles, kv_heads, group * tile, head_dim)  # query head h = kv * group + j
        out, lse = attention_with_lse(stacked, seen_by_all(keys), seen_by_all(values), causal=False)
        parts.append((out.reshape(q_tiles.shape), lse.reshape(q_tiles.shape[:3])))
    merged = merge_by_lse(parts).to(q.dtype)
    return merged.unflatten(0, (batch, tiles)).transpose(1, 2).flatten(2, 3)[:, :, :rows]


def merge_by_lse(parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Attention over the union of disjoint key sets from each set's output [..., L, hd] and log-sum-exp
    [..., L]: sum_i out_i * exp(lse_i - lse), lse = logsumexp_i lse_i; fp32."""
    lse = torch.logsumexp(torch.stack([p[1] for p in parts]), dim=0)
    total = parts[0][0].float() * (parts[0][1] - lse).exp().unsqueeze(-1)
    for out, part_lse in parts[1:]:
        total.addcmul_(out.float(), (part_lse - lse).exp().unsqueeze(-1))
    return total


def _padded(t: Tensor, tile: int) -> Tensor:
    """t [B, H, rows, hd] (rows <= tile) as a contiguous [B, H, tile, hd], zero rows after its own (a full tile is
    only made contiguous: no zero fill on the common path)."""
    if t.shape[2] == tile:
        return t.contiguous()
    out = t.new_zeros(*t.shape[:2], tile, t.shape[3])
    out[:, :, : t.shape[2]] = t
    return out
