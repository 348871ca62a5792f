"""Peak memory and time of one anchor-attention piece after a full cache at the 2B shape (16 query heads, 8 KV heads,
head dim 128; a 1024-frame prompt's last piece: 11,038 queries over 88,094 keys), with the KV heads as they are
(the library since session 15) and repeated to the query heads (what its flash probe made it do before).

    PYTHONPATH=src python benchmarks/after_cache_memory.py     # CUDA only
"""

import argparse

import torch
from torch.nn.attention.bias import causal_lower_right

from spatial_ttt.ops.attention_gpu import attention_after_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=11038)
    parser.add_argument("--keys", type=int, default=88094)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("after_cache_memory.py needs a CUDA GPU")
    q = torch.randn(1, 16, args.queries, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, 8, args.keys, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))

    def repeated() -> torch.Tensor:
        kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
        return torch.nn.functional.scaled_dot_product_attention(
            q, kr, vr, attn_mask=causal_lower_right(args.queries, args.keys))

    outs = {}
    for name, fn in (("gqa_native", lambda: attention_after_cache(q, k, v)), ("repeated", repeated)):
        fn()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        outs[name] = fn()
        end.record()
        torch.cuda.synchronize()
        print(f"{name}: peak above inputs {(torch.cuda.max_memory_allocated() - base) / 2**30:.3f} GiB, "
              f"{start.elapsed_time(end):.1f} ms", flush=True)
    print("same bits:", torch.equal(outs["gqa_native"], outs["repeated"]))


if __name__ == "__main__":
    main()
