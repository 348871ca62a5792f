"""What does a cuDNN attention call cost the first time it meets something? `anchor_attention="split"` (cuDNN)
ran a 1024-frame prefill 0.3-0.6 s faster than flash but a stream 3x slower (session 8), and a fixed-shape
variant did not remove its first-pass cost. This times single calls of the split path's op
(:func:`spatial_ttt.ops.attention_gpu.attention_with_lse`, 2B shape: 8 KV heads, head_dim 128, bf16) when
each of these is new to the process: the shape; the tensors (same shape and strides, other memory); the strides
(same shape, a slice of a longer buffer, as a KV cache's keys are). ``host_s``: until the call returns to Python
(where a plan is built), ``total_s``: until the GPU is done.

    PYTHONPATH=src:benchmarks python benchmarks/cudnn_plans.py --out cudnn_plans.json   # one GPU

Cases: ``init`` (the process's first cuDNN attention, a small shape); ``shape`` (a prefill piece's prefix call:
2 x 16,384 stacked queries over 16,384 keys) first / again / other tensors / other strides; ``stream``: a stream's
prefix calls (2 x 2,752 stacked queries over a cache growing by 2,752 keys), 12 pieces, then the same 12 again.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import environment, write_json

from spatial_ttt.ops.attention_gpu import attention_with_lse

HEADS, DIM = 8, 128


def timed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> dict:
    torch.cuda.synchronize()
    start = time.perf_counter()
    attention_with_lse(q, k, v, causal)
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    return dict(host_s=round(host, 5), total_s=round(time.perf_counter() - start, 5))


def rows(n: int, capacity: int | None = None) -> torch.Tensor:
    """[1, 8, n, 128] bf16; with ``capacity``, the first n rows of a [1, 8, capacity, 128] buffer (a cache)."""
    full = torch.randn(1, HEADS, capacity or n, DIM, device="cuda", dtype=torch.bfloat16)
    return full[:, :, :n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--pieces", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    result = dict(env=environment(), cases={})
    result["cases"]["init"] = timed(rows(256), rows(256), rows(256), True)

    q, k, v = rows(32768), rows(16384), rows(16384)
    shape = dict(first=timed(q, k, v, False), again=timed(q, k, v, False))
    shape["other_tensors"] = timed(rows(32768), rows(16384), rows(16384), False)
    shape["other_strides"] = timed(q, rows(16384, 65536), rows(16384, 65536), False)
    shape["other_strides_again"] = timed(q, rows(16384, 65536), rows(16384, 65536), False)
    result["cases"]["shape"] = shape
    print("init", result["cases"]["init"], "\nshape", shape, flush=True)

    piece = 2752
    cache_k, cache_v = rows(piece * args.pieces, 65536), rows(piece * args.pieces, 65536)
    stacked = rows(2 * piece)
    for name in ("stream_first", "stream_again"):
        calls = [timed(stacked, cache_k[:, :, : piece * i], cache_v[:, :, : piece * i], False)
                 for i in range(1, args.pieces + 1)]
        result["cases"][name] = calls
        print(name, [c["host_s"] for c in calls], flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
