"""How fast is the TTT layers' sliding window? One TTT layer's window attention over a 1024-frame prefill (2B
shape: 16 query heads, 8 KV heads, head_dim 128, bf16, window 2,648) as the library runs it: pieces of --piece
queries, each over the window's cached keys (the last 2,648 of the previous pieces) and its own, on one GPU.

    PYTHONPATH=src:benchmarks python benchmarks/bench_window_attention.py --out window_attention.json

Cases (seconds for one layer, all pieces; TFLOP/s counts the visible band, 4 * heads * hd per query and key seen):
  flex             config.window_attention = "flex": flex_attention with the band's block mask
  split_T_N        "split": attention_in_window_split with tiles of T rows, N tiles per cuDNN call (the default:
                   attention_gpu.WINDOW_TILE, WINDOW_TILES)
  stream_*         the same for one 128-frame stream piece after a full window (--stream-piece rows)
first_s: the case's first pass (cuDNN's plans, flex's compilations). error: the largest difference from an fp32
reference (masked SDPA) over the first piece and the second (after a cache), and flex's own, for scale.
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from common import cuda_time, environment, median, write_json

from spatial_ttt.layers.attention import masked_attention
from spatial_ttt.ops import attention_gpu
from spatial_ttt.ops.attention_gpu import causal_attention

WINDOW = 2648
SPLIT = attention_gpu.attention_in_window_split
SPLITS = ((2048, 2), (2048, 4), (2048, 8), (1024, 4), (1024, 8), (1324, 4))


def band_flops(bounds: list[tuple[int, int]], window: int) -> float:
    """4 * heads * hd per visible (query, key) pair: query i sees min(i + 1, window) keys."""
    seen = sum(min(i + 1, window) for s, e in bounds for i in range(s, e))
    return 4 * 16 * 128 * seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=88094)
    parser.add_argument("--piece", type=int, default=16340)  # 95 frame groups of 172 tokens (352x480)
    parser.add_argument("--stream-piece", type=int, default=11008)  # 64 frame groups: a 128-frame piece
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    make = lambda heads: torch.randn(1, heads, args.tokens, 128, device="cuda", dtype=torch.bfloat16)  # noqa: E731
    q, k, v = make(16), make(8), make(8)
    bounds = [(s, min(s + args.piece, args.tokens)) for s in range(0, args.tokens, args.piece)]
    stream = [(WINDOW, WINDOW + args.stream_piece)]

    def layer(setting: str, tile: int | None, tiles: int | None, pieces: list[tuple[int, int]]):
        split = functools.partial(SPLIT, tile=tile, tiles=tiles) if tile else None

        def run(keep: list | None = None, pieces: list[tuple[int, int]] = pieces):
            original = attention_gpu.attention_in_window_split
            if split is not None:
                attention_gpu.attention_in_window_split = split
            try:
                for s, e in pieces:
                    lo = max(0, s - WINDOW)
                    out = causal_attention(q[:, :, s:e], k[:, :, lo:e], v[:, :, lo:e], s, lo, WINDOW, "split", setting)
                    if keep is not None:
                        keep.append(out)
            finally:
                attention_gpu.attention_in_window_split = original
        return run

    reference = [masked_attention(q[:, :, s:e].float(), k[:, :, max(0, s - WINDOW):e].float(),
                                  v[:, :, max(0, s - WINDOW):e].float(), s, max(0, s - WINDOW), WINDOW)
                 for s, e in bounds[:2]]
    cases = {"flex": layer("flex", None, None, bounds)}
    cases.update({f"split_{t}_{n}": layer("split", t, n, bounds) for t, n in SPLITS})
    cases["stream_flex"] = layer("flex", None, None, stream)
    cases.update({f"stream_split_{t}_{n}": layer("split", t, n, stream) for t, n in SPLITS})
    result = dict(tokens=args.tokens, piece=args.piece, window=WINDOW, env=environment(), cases={})
    for name, fn in cases.items():
        pieces = stream if name.startswith("stream") else bounds
        try:
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            first_s = time.perf_counter() - start
            seconds = median(cuda_time(fn, repeat=5))
            entry = dict(seconds=seconds, first_s=first_s, tflops=band_flops(pieces, WINDOW) / seconds / 1e12,
                         twenty_one_layers_s=21 * seconds)
            if not name.startswith("stream"):
                outs: list = []
                fn(outs, bounds[:2])  # the prompt's first window, then a piece after a cache
                entry["error"] = max((o.float() - r).abs().max().item() for o, r in zip(outs, reference))
            result["cases"][name] = entry
        except Exception as error:  # a backend that refuses the problem: record why
            result["cases"][name] = dict(error=f"{type(error).__name__}: {str(error)[:300]}")
        print(name, result["cases"][name], flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
