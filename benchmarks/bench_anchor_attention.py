"""How fast could the anchors' attention be? The 7 anchor layers' causal attention of a 1024-frame prefill (2B
shape: 16 query heads, 8 KV heads, head_dim 128, bf16), as the library runs it (pieces of --piece queries after a
KV cache, SDPA's flash kernel with the diagonal bottom-right) against other SDPA backends, on one GPU.

    PYTHONPATH=src python benchmarks/bench_anchor_attention.py --out anchor_attention.json

Cases (seconds for one layer, all pieces; TFLOP/s counts the visible half of the score matrix):
  pieces_flash       the library: attention_after_cache per piece (flash, GQA native)
  pieces_cudnn       the same problems through the cuDNN backend (KV heads repeated, causal_lower_right mask)
  pieces_split       the library's anchor_attention="split": per piece, attention_after_cache_split (tiles of
                     8,192 queries through cuDNN over their own keys and, unmasked, over key tiles of 16,384 before
                     them, merged by log-sum-exp; since session 19 two fixed shapes, before one call per piece)
  whole_flash        one square causal call over all tokens (is_causal, flash, GQA native)
  whole_cudnn        the same through cuDNN (KV heads repeated)
first_s: the case's first pass, where every shape is new to it (a stream's pieces each meet a longer cache once),
against seconds, the median of later passes (the first case of a process also pays the CUDA libraries' start).
A case the backend refuses is recorded with its error. extra_peak_gib: the peak above what was allocated before
the case (the inputs, and the repeated keys of the cuDNN cases).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from common import cuda_time, environment, median, write_json

from spatial_ttt.ops.attention_gpu import attention_after_cache, attention_after_cache_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=88094)
    # a prompt's pieces are whole frame groups: 95 groups of 172 tokens (352x480) fill config.prefill_piece (16,384)
    # to 16,340 tokens; runs before session 19 used 16,384
    parser.add_argument("--piece", type=int, default=16340)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    make = lambda heads: torch.randn(1, heads, args.tokens, 128, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    q, k, v = make(16), make(8), make(8)
    kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    bounds = [(s, min(s + args.piece, args.tokens)) for s in range(0, args.tokens, args.piece)]

    def pieces(backend):
        def run():
            for s, e in bounds:
                if backend is None:
                    attention_after_cache(q[:, :, s:e], k[:, :, :e], v[:, :, :e])
                else:
                    with sdpa_kernel([backend]):
                        F.scaled_dot_product_attention(q[:, :, s:e], kr[:, :, :e], vr[:, :, :e],
                                                       attn_mask=causal_lower_right(e - s, e))
        return run

    def pieces_split():
        for s, e in bounds:
            attention_after_cache_split(q[:, :, s:e], k[:, :, :e], v[:, :, :e])

    def whole(backend, gqa):
        def run():
            with sdpa_kernel([backend]):
                if gqa:
                    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                else:
                    F.scaled_dot_product_attention(q, kr, vr, is_causal=True)
        return run

    flops = 4 * 16 * 128 * args.tokens * args.tokens / 2
    cases = {"pieces_flash": pieces(None), "pieces_cudnn": pieces(SDPBackend.CUDNN_ATTENTION),
             "pieces_split": pieces_split, "whole_flash": whole(SDPBackend.FLASH_ATTENTION, True),
             "whole_cudnn": whole(SDPBackend.CUDNN_ATTENTION, False)}
    result = dict(tokens=args.tokens, piece=args.piece, env=environment(), cases={})
    for name, fn in cases.items():
        try:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()  # the first pass: every shape new to the case (what a stream meets: each piece a longer cache)
            torch.cuda.synchronize()
            first_s = time.perf_counter() - start
            seconds = median(cuda_time(fn))
            result["cases"][name] = dict(seconds=seconds, first_s=first_s, tflops=flops / seconds / 1e12,
                                         seven_layers_s=7 * seconds,
                                         extra_peak_gib=(torch.cuda.max_memory_allocated() - before) / 2**30)
        except Exception as error:  # a backend that refuses the problem: record why
            result["cases"][name] = dict(error=f"{type(error).__name__}: {str(error)[:300]}")
        print(name, result["cases"][name], flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
