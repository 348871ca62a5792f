"""Decode ms/token after a long text prompt: eager against graphed decoding (``config.decode_kernel``).

    PYTHONPATH=src:benchmarks python benchmarks/bench_decode.py --tokens 11000 88000 --out decode.json   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/bench_decode.py --tiny --out decode.json   # CPU, seconds (tests)

Random weights of the Qwen3-VL-2B shape (common.py) in bf16, released settings with Muon off (``--tiny``: the tiny
test shape in fp32 on the CPU, where "graphed" runs the same static step uncompiled). Per prompt length, one
prefill of a text-only prompt with a state; then per decode kernel a first decode (compilation and graph capture,
``first_call_s``) and ``--repeat`` timed decodes of ``--new-tokens`` tokens, each from a fresh copy of the
prefilled state:
  ms_per_token         decode seconds / tokens fed (a decode of n new tokens feeds n - 1), capture included;
  setup_s              the static decoder's build and graph capture per decode (graphed only, in the above);
  ms_per_token_steady  the same without setup_s: a replay per token;
  peak_gib             torch.cuda.max_memory_allocated during a timed decode (prefilled state included).
``agree`` (when both kernels run): whether their greedy tokens are equal, and the first index where they differ.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
from typing import Any

import torch

from common import IDS_2B, TEXT_2B, VISION_2B, write_json
from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.models.modeling import SpatialTTTForConditionalGeneration

GIB = 2**30


def build(tiny: bool, device: torch.device, precision: str) -> SpatialTTTForConditionalGeneration:
    if tiny:
        from spatial_ttt.tiny import tiny_model

        return tiny_model(use_muon=False, lact_chunk_size=16, window_size=32, fast_weight_precision=precision)
    config = SpatialTTTConfig(text_config=dict(TEXT_2B), vision_config=dict(VISION_2B), tie_word_embeddings=True,
                              **IDS_2B, use_muon=False, fast_weight_precision=precision)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with device:
            model = SpatialTTTForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_decode(model, state, logits, new_tokens: int, device: torch.device) -> tuple[torch.Tensor, float]:
    gc.collect()
    sync(device)
    start = time.perf_counter()
    tokens = model.decode(state, logits, new_tokens, stop_token_ids=[])
    sync(device)
    return tokens, time.perf_counter() - start


def measure(model, length: int, new_tokens: int, repeat: int, kernels: list[str], device: torch.device) -> list[dict]:
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(10, min(100000, model.config.image_token_id), (1, length), generator=g).to(device)
    state = model.new_state(1)
    with torch.no_grad():
        logits = model(ids, state=state, logits_to_keep=1).logits[:, -1]
    runs, greedy = [], {}
    for kernel in kernels:
        model.config.decode_kernel = kernel
        greedy[kernel], first_s = timed_decode(model, copy.deepcopy(state), logits, new_tokens, device)
        times, setups, peak = [], [], 0
        for _ in range(repeat):
            fresh = copy.deepcopy(state)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _, seconds = timed_decode(model, fresh, logits, new_tokens, device)
            peak = max(peak, torch.cuda.max_memory_allocated() if device.type == "cuda" else 0)
            times.append(seconds)
            setups.append(model.static_decoding.last.get("setup_s", 0.0))
            del fresh
        best = min(range(repeat), key=times.__getitem__)
        fed = new_tokens - 1
        runs.append(dict(tokens=length, kernel=model.static_decoding.last["kernel"], new_tokens=new_tokens,
                         captured=model.static_decoding.last.get("captured", False), first_call_s=first_s,
                         ms_per_token=1e3 * times[best] / fed, setup_s=setups[best],
                         ms_per_token_steady=1e3 * (times[best] - setups[best]) / fed, peak_gib=peak / GIB,
                         times_s=times))
        print(json.dumps(runs[-1]), flush=True)
    if len(greedy) == 2:
        a, b = (tokens[0].tolist() for tokens in greedy.values())
        differ = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        for run in runs:
            run["agree"] = dict(equal=differ is None, first_difference=differ)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON file to write (rewritten after every prompt length)")
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU: checks the script, in seconds")
    parser.add_argument("--tokens", type=int, nargs="+", help="prompt lengths (default 11000 88000; tiny: 40)")
    parser.add_argument("--new-tokens", type=int, help="tokens per decode (default 64; tiny: 12)")
    parser.add_argument("--repeat", type=int, default=3, help="timed decodes per kernel (the fastest is reported)")
    parser.add_argument("--kernels", nargs="+", default=["eager", "graphed"], choices=["eager", "graphed"],
                        help="decode kernels to time (greedy tokens are compared when both run)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="fast_weight_precision")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    model = build(args.tiny, device, args.precision)
    results: dict[str, Any] = dict(shape="tiny" if args.tiny else "qwen3-vl-2b", device=str(device),
                                   precision=args.precision, runs=[])
    if device.type == "cuda":
        from common import environment

        results["env"] = environment()
    for length in args.tokens or ([40] if args.tiny else [11000, 88000]):
        new_tokens = args.new_tokens or (12 if args.tiny else 64)
        results["runs"] += measure(model, length, new_tokens, args.repeat, args.kernels, device)
        write_json(args.out, results)
    for run in results["runs"]:
        print(f"{run['tokens']} tokens, {run['kernel']}: {run['ms_per_token']:.2f} ms/token "
              f"({run['ms_per_token_steady']:.2f} without the {run['setup_s']:.3f} s setup), "
              f"first call {run['first_call_s']:.1f} s, greedy tokens equal: {run.get('agree', {}).get('equal')}")


if __name__ == "__main__":
    main()
