"""Decode attention over static KV buffers as a Triton split-K ("flash-decoding") kernel (CUDA).

Same signature and result as :func:`spatial_ttt.layers.attention.decode_attention_reference`, the reference:
one query token per row q [B, H, 1, hd] against static buffers keys/values [B, H_kv, L, hd], of which slots
0..``last`` are visible (``last`` [1], a device tensor: the length changes between replays of a CUDA graph
without a new capture; ``last`` >= L means all L slots, as a full window ring has) -> [B, H, 1, hd] in q's dtype.
Query head h uses KV head h // (H // H_kv), as SDPA's enable_gqa. Both products run on tensor cores (``tl.dot``;
fp32 inputs as "ieee" dots, no TF32): scores are exact products summed in fp32, the softmax statistics are fp32,
and the fp32 weights meet the values as the sum of two parts in the values' dtype (16 significant bits for
bf16), so that the result differs from the reference's by the output's rounding only (the tests check it).

Why: a decoded token's attention reads the whole cache once (88k slots x 8 KV heads x 128 x bf16 x K and V =
360 MB per anchor layer at a 1024-frame prompt) and does ~2 flops per byte: it is bandwidth-bound and needs
the whole GPU streaming the cache. Two kernels:

* ``_split_kernel``, one program per (row, KV head, split): the visible slots are cut into ``splits`` equal
  runs, counted from ``last`` on the device (so every program has work however long the buffer is, and slots
  past ``last`` are never read); it streams its run's keys and values once for all ``group`` query heads of its
  KV head (padded to the 16 rows of a tensor-core product; the loads are software-pipelined because they feed
  ``tl.dot``), with an online softmax, and writes the unnormalised sum and its statistics (max, sum of weights);
* ``_merge_kernel``, one program per (row, query head): the log-sum-exp merge of the splits.

:func:`decode_attention_triton` is a ``torch.library.triton_op``: torch.compile (static_decode's compiled,
graph-captured step) traces into it and launches both kernels from its generated code, with no graph break;
eagerly it is an ordinary call.
"""

from __future__ import annotations  # keeps the kernels' ``tl.constexpr`` annotations unevaluated without Triton

import contextlib

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs have no Triton; the kernel is only chosen on CUDA
    triton = None

# block: slots per loop step; splits: runs per (row, KV head) (B * H_kv * splits programs in all: 512 for one row
# of the 2B model, about one wave of 4 per SM on an H100; with few visible slots the last ones are empty, which
# costs a program's launch); num_stages: loads in flight (Triton's software pipelining). Not yet timed:
# benchmarks/bench_decode.py --op sweeps them.
TILE = dict(block=32, splits=64, num_warps=4, num_stages=3)


def _jit(fn):
    return fn if triton is None else triton.jit(fn)


@_jit
def _split_kernel(
    q, k, v, last, acc_out, max_out, sum_out, L, SPLITS, HEADS_KV,
    stride_qb, stride_qh, stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, DIM: tl.constexpr, BLOCK: tl.constexpr, SCALE: tl.constexpr,
):
    row, split = tl.program_id(0), tl.program_id(1)  # row: b * H_kv + KV head
    b, kv_head = row // HEADS_KV, row % HEADS_KV
    visible = tl.minimum(tl.load(last).to(tl.int32) + 1, L)
    run = tl.cdiv(tl.cdiv(visible, SPLITS), BLOCK) * BLOCK  # whole blocks per split; the last splits may be empty
    start = split * run
    end = tl.minimum(start + run, visible)
    g, d = tl.arange(0, GROUP_PAD), tl.arange(0, DIM)
    heads = kv_head * GROUP + g  # the query heads of this KV head (GROUP_PAD >= max(GROUP, 16): a power of two)
    q_rows = q + b.to(tl.int64) * stride_qb + heads[:, None].to(tl.int64) * stride_qh + d[None, :]
    query = tl.load(q_rows, mask=(g < GROUP)[:, None], other=0.0)  # [G, hd]; rows past the group: 0
    keys = k + b.to(tl.int64) * stride_kb + kv_head.to(tl.int64) * stride_kh
    values = v + b.to(tl.int64) * stride_vb + kv_head.to(tl.int64) * stride_vh
    top = tl.full((GROUP_PAD,), float("-inf"), tl.float32)  # running max of the scores
    total = tl.zeros((GROUP_PAD,), tl.float32)  # running sum of exp(score - top)
    acc = tl.zeros((GROUP_PAD, DIM), tl.float32)  # running sum of exp(score - top) * value
    for first in range(start, end, BLOCK):
        slots = first + tl.arange(0, BLOCK)
        inside = slots < end
        key = tl.load(keys + slots[:, None].to(tl.int64) * stride_kl + d[None, :], mask=inside[:, None], other=0.0)
        value = tl.load(values + slots[:, None].to(tl.int64) * stride_vl + d[None, :], mask=inside[:, None],
                        other=0.0)
        # exact products summed in fp32 on tensor cores ("ieee": no TF32 rounding of fp32 inputs)
        scores = tl.dot(query, tl.trans(key), input_precision="ieee") * SCALE  # [G, BLOCK]
        scores = tl.where(inside[None, :], scores, float("-inf"))
        new_top = tl.maximum(top, tl.max(scores, axis=1))  # finite: slot ``first`` is inside
        weights = tl.exp(scores - new_top[:, None])
        rescale = tl.exp(top - new_top)
        # the weights in the values' dtype as a sum of two (bf16: 16 significant bits, fp32: exact)
        high = weights.to(value.dtype)
        low = (weights - high.to(tl.float32)).to(value.dtype)
        acc = acc * rescale[:, None] + tl.dot(high, value, input_precision="ieee")
        acc += tl.dot(low, value, input_precision="ieee")
        total = total * rescale + tl.sum(weights, axis=1)
        top = new_top
    at = (b * HEADS_KV * GROUP + heads).to(tl.int64) * SPLITS + split  # [B, H, SPLITS] statistics
    tl.store(max_out + at, top, mask=g < GROUP)
    tl.store(sum_out + at, total, mask=g < GROUP)
    tl.store(acc_out + at[:, None] * DIM + d[None, :], acc, mask=(g < GROUP)[:, None])


@_jit
def _merge_kernel(acc_in, max_in, sum_in, out, SPLITS, SPLITS_PAD: tl.constexpr, DIM: tl.constexpr):
    head = tl.program_id(0)  # b * H + query head; out [B, H, 1, hd] contiguous
    s, d = tl.arange(0, SPLITS_PAD), tl.arange(0, DIM)
    at = head.to(tl.int64) * SPLITS + s
    top = tl.load(max_in + at, mask=s < SPLITS, other=float("-inf"))  # an empty split: -inf, weight 0
    total = tl.load(sum_in + at, mask=s < SPLITS, other=0.0)
    acc = tl.load(acc_in + at[:, None] * DIM + d[None, :], mask=(s < SPLITS)[:, None], other=0.0)
    weight = tl.exp(top - tl.max(top, axis=0))  # the first split always holds slot 0: the max is finite
    result = tl.sum(weight[:, None] * acc, axis=0) / tl.sum(weight * total, axis=0)
    tl.store(out + head.to(tl.int64) * DIM + d, result.to(out.dtype.element_ty))


def _launch(q: Tensor, keys: Tensor, values: Tensor, last: Tensor, block: int, splits: int, num_warps: int,
            num_stages: int, launch=lambda kernel: kernel) -> Tensor:
    batch, heads, _, dim = q.shape
    heads_kv, length = keys.shape[1], keys.shape[2]  # compiled, the length may be symbolic: no Python math on it
    group = heads // heads_kv
    out = torch.empty(batch, heads, 1, dim, dtype=q.dtype, device=q.device)
    # per split: max score, sum of weights, weighted sum of values (separate tensors, not views of one: each is a
    # whole argument the compiler's functionalisation of the kernels can track)
    top, total = (q.new_empty(batch, heads, splits, dtype=torch.float32) for _ in range(2))
    acc = q.new_empty(batch, heads, splits, dim, dtype=torch.float32)
    # Triton launches on the current device: make it the tensors' (a model on cuda:1 under torchrun, say)
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        launch(_split_kernel)[(batch * heads_kv, splits)](
            q, keys, values, last, acc, top, total, length, splits, heads_kv,
            q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
            values.stride(0), values.stride(1), values.stride(2),
            GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), DIM=dim, BLOCK=block,
            # a constant, not an argument: inductor passes a float argument as fp64, which made the scores and the
            # loop-carried max fp64 and failed compilation inside the graphed decode step (seen on an H100)
            SCALE=dim**-0.5, num_warps=num_warps, num_stages=num_stages,
        )
        launch(_merge_kernel)[(batch * heads,)](
            acc, top, total, out, splits, SPLITS_PAD=triton.next_power_of_2(splits), DIM=dim,
        )
    return out


if triton is not None:

    @torch.library.triton_op("spatial_ttt::decode_attention", mutates_args=())
    def _decode_attention_op(q: Tensor, keys: Tensor, values: Tensor, last: Tensor, block: int, splits: int,
                             num_warps: int, num_stages: int) -> Tensor:
        return _launch(q, keys, values, last, block, splits, num_warps, num_stages, torch.library.wrap_triton)


def decode_attention_triton(q: Tensor, keys: Tensor, values: Tensor, last: Tensor, **tile: int) -> Tensor:
    """q [B, H, 1, hd], keys/values [B, H_kv, L, hd], last [1] (int) -> [B, H, 1, hd] (see the module docstring).
    ``tile`` overrides entries of :data:`TILE` (benchmarks sweep them). hd must be a power of two, at least 16 (a
    tensor-core product's depth), and the last dimension of every tensor contiguous."""
    if triton is None:
        raise RuntimeError("the decode attention's Triton kernel needs Triton; on CPU the reference runs without it")
    tile = {**TILE, **tile}
    dim = q.shape[-1]
    if dim < 16 or dim & (dim - 1) or any(t.stride(-1) != 1 for t in (q, keys, values)):
        strides = [t.stride(-1) for t in (q, keys, values)]
        raise ValueError(f"decode_attention_triton needs a power-of-two head dim >= 16 and rows of unit stride, got "
                         f"head dim {dim} and last strides {strides} (q, keys, values)")
    return _decode_attention_op(q, keys, values, last, tile["block"], tile["splits"], tile["num_warps"],
                                tile["num_stages"])
