"""How fast is the TTT layers' sliding window? One TTT layer's window attention over a 1024-frame prefill (2B
shape: 16 query heads, 8 KV heads, head_dim 128, bf16, window 2,648) as the library runs it: pieces of --piece
queries, each over the window's cached keys (the last 2,648 of the previous pieces) and its own, through
flex_attention with the band's block mask (spatial_ttt.ops.attention_gpu), under flex's kernel options.

    PYTHONPATH=src:benchmarks python benchmarks/bench_window_attention.py --out window_attention.json

Cases (seconds for one layer, all pieces; TFLOP/s counts the visible band, 4 * heads * hd per query and key seen):
  library          causal_attention as the TTT layers call it (flex with inductor's default config for the GPU:
                   on an H100/H200 BLOCK_M 128, BLOCK_N 64, 3 stages, 8 warps)
  <options>        flex_attention with these kernel_options (no_tma: none; TMA loads, other tiles, stages, warps)
  max_autotune     flex compiled with mode="max-autotune-no-cudagraphs" (inductor tries its list of configs)
  stream_*         the same for one 128-frame stream piece after a full window (--stream-piece rows)
first_s: the case's first pass (compilations, autotuning). error: the largest difference from the library's
output over the first two pieces (the prompt's first window, then a piece after a cache).
Session 25: call 1 (at commit 2833648) timed a cuDNN decomposition of the window here instead: slower; call 4: in
the model's layout flex runs at ~280 TFLOP/s whatever the options (TMA 3 % faster), in contiguous tensors TMA
loads take it from 185 to 294 (benchmarks/RESULTS.md, session 25).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn.attention.flex_attention import flex_attention

from common import cuda_time, environment, median, write_json

from spatial_ttt.ops.attention_gpu import band_block_mask, causal_attention

WINDOW = 2648
OPTIONS = {
    "no_tma": {},
    "tma": dict(USE_TMA=True),
    "n128_s2": dict(BLOCK_M=128, BLOCK_N=128, num_stages=2, num_warps=8),
    "tma_n128_s2": dict(USE_TMA=True, BLOCK_M=128, BLOCK_N=128, num_stages=2, num_warps=8),
    "m64_n64_s3_w4": dict(BLOCK_M=64, BLOCK_N=64, num_stages=3, num_warps=4),
    "m128_n64_s4_w8": dict(BLOCK_M=128, BLOCK_N=64, num_stages=4, num_warps=8),
}


def band_flops(bounds: list[tuple[int, int]], window: int) -> float:
    """4 * heads * hd per visible (query, key) pair: query i sees min(i + 1, window) keys."""
    seen = sum(min(i + 1, window) for s, e in bounds for i in range(s, e))
    return 4 * 16 * 128 * seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=88094)
    parser.add_argument("--piece", type=int, default=16340)  # 95 frame groups of 172 tokens (352x480)
    parser.add_argument("--stream-piece", type=int, default=11008)  # 64 frame groups: a 128-frame piece
    parser.add_argument("--layout", choices=("model", "contiguous"), default="model")
    parser.add_argument("--autotune", action="store_true", help="also the max-autotune case (minutes)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch._dynamo.config.recompile_limit = 64  # a compilation per option set and shape, all kept
    torch.manual_seed(0)
    # the model's layout: q, k, v come out of the projections as [B, S, H, hd] and are handed over transposed
    # ([B, H, S, hd] views); after the first piece the keys are the window cache and the piece concatenated
    # (contiguous). --layout contiguous: [B, H, S, hd] tensors (what session 25 calls 1-2 timed)
    make = lambda heads: torch.randn(1, args.tokens, heads, 128, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    q, k, v = make(16).transpose(1, 2), make(8).transpose(1, 2), make(8).transpose(1, 2)
    if args.layout == "contiguous":
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    bounds = [(s, min(s + args.piece, args.tokens)) for s in range(0, args.tokens, args.piece)]
    stream = [(WINDOW, WINDOW + args.stream_piece)]

    def inputs(s: int, e: int) -> tuple:
        lo = max(0, s - WINDOW)
        if lo == s or args.layout == "contiguous":
            return q[:, :, s:e], k[:, :, lo:e], v[:, :, lo:e], s, lo
        keys, values = (torch.cat([t[:, :, lo:s].contiguous(), t[:, :, s:e]], dim=2) for t in (k, v))
        return q[:, :, s:e], keys, values, s, lo

    compiled = torch.compile(flex_attention)
    autotuned = torch.compile(flex_attention, mode="max-autotune-no-cudagraphs") if args.autotune else None

    def layer(options: dict | None, flex=compiled):
        def run(pieces: list[tuple], keep: list | None = None):
            for q_p, k_p, v_p, s, lo in pieces:
                if options is None and flex is compiled:
                    out = causal_attention(q_p, k_p, v_p, s, lo, WINDOW)
                else:
                    mask = band_block_mask(q_p.shape[2], k_p.shape[2], s, lo, WINDOW, q.device)
                    out = flex(q_p, k_p, v_p, block_mask=mask, enable_gqa=True, kernel_options=options)
                if keep is not None:
                    keep.append(out)
        return run

    cases = {"library": layer(None), **{name: layer(options) for name, options in OPTIONS.items()}}
    if autotuned is not None:
        cases["max_autotune"] = layer(None, autotuned)
    prompt_pieces, stream_pieces = [inputs(*b) for b in bounds], [inputs(*b) for b in stream]
    reference: list = []
    cases["library"](prompt_pieces[:2], reference)
    result = dict(tokens=args.tokens, piece=args.piece, window=WINDOW, layout=args.layout, env=environment(), cases={})
    for pieces, prefix in ((prompt_pieces, ""), (stream_pieces, "stream_")):
        for name, fn in cases.items():
            try:
                torch.cuda.synchronize()
                start = time.perf_counter()
                fn(pieces)
                torch.cuda.synchronize()
                first_s = time.perf_counter() - start
                seconds = median(cuda_time(lambda: fn(pieces), repeat=5))
                entry = dict(seconds=seconds, first_s=first_s, tflops=band_flops(bounds if not prefix else stream,
                                                                                  WINDOW) / seconds / 1e12,
                             twenty_one_layers_s=21 * seconds)
                if not prefix:
                    outs: list = []
                    fn(prompt_pieces[:2], outs)
                    entry["error"] = max((o.float() - r.float()).abs().max().item() for o, r in zip(outs, reference))
                result["cases"][prefix + name] = entry
            except Exception as error:  # an option the kernel refuses: record why
                result["cases"][prefix + name] = dict(error=f"{type(error).__name__}: {str(error)[:300]}")
            print(prefix + name, result["cases"][prefix + name], flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
