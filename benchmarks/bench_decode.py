"""Decode ms/token after a long text prompt: eager against graphed decoding (``config.decode_kernel``); with
``--op``, the decode attention alone (the reference compiled against the Triton kernel).

    PYTHONPATH=src:benchmarks python benchmarks/bench_decode.py --tokens 11000 88000 --out decode.json   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/bench_decode.py --tiny --out decode.json   # CPU, seconds (tests)
    PYTHONPATH=src:benchmarks python benchmarks/bench_decode.py --op --out decode_op.json   # one GPU, ~1 min

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

``--op``: :func:`spatial_ttt.layers.attention.decode_attention`'s kernels at the 2B shape (one row, 16 query heads,
8 KV heads, head dim 128, bf16) over the static buffers of the 7 anchor layers (one buffer each, as in the model:
no layer finds another's K/V in L2), ``--op-slots`` cases ``L`` (all L slots visible) or ``L:last``. A CUDA graph
calls the kernel once per layer; per case and kernel (the reference through torch.compile, the Triton kernel at
its default tile and the ``TILES`` sweep):
  ms_per_layer   a graph replay / 7 (median of --repeat timed runs of 20 replays; CUDA events);
  gbps           the visible slots' K and V bytes / ms_per_layer;
  max_abs_diff   against the compiled reference (Triton only).
``--tiny``: small buffers on the CPU, the eager reference only (Triton and inductor need CUDA here).
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
ANCHORS = 7  # full-attention layers of the 2B model (every 4th of 28)
TILES = [dict(block=b, splits=s) for b in (16, 32, 64) for s in (32, 64, 128)] + [
    dict(num_stages=2), dict(num_stages=4), dict(block=64, num_warps=8), dict(block=128, num_warps=8)]  # over TILE


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


def graph_ms(call, device: torch.device, repeat: int, replays: int = 20) -> float:
    """ms of one ``call()`` (median of ``repeat`` timings): on CUDA captured as a graph and replayed ``replays``
    times between two events, on the CPU called ``replays`` times."""
    call()  # compiles
    if device.type != "cuda":
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            for _ in range(replays):
                call()
            times.append(1e3 * (time.perf_counter() - began) / replays)
        return sorted(times)[len(times) // 2]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    graph.replay()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / replays)
    return sorted(times)[len(times) // 2]


def measure_op(case: str, repeat: int, device: torch.device, tiny: bool) -> list[dict]:
    """The decode attention's kernels over ``case`` ("L" or "L:last") slots of 7 layers' buffers."""
    from spatial_ttt.layers.attention import decode_attention_reference

    slots, _, last = case.partition(":")
    slots, last = int(slots), int(last or int(slots) - 1)
    heads, heads_kv, dim, dtype = (4, 2, 16, torch.float32) if tiny else (16, 8, 128, torch.bfloat16)
    g = torch.Generator(device).manual_seed(slots)
    q = torch.randn(1, heads, 1, dim, generator=g, device=device, dtype=dtype)
    buffers = [torch.randn(2, 1, heads_kv, slots, dim, generator=g, device=device, dtype=dtype)
               for _ in range(ANCHORS)]
    where = torch.tensor([last], device=device)
    outs = torch.empty(ANCHORS, *q.shape, device=device, dtype=dtype)
    kernels = {"reference": decode_attention_reference if tiny else
               torch.compile(decode_attention_reference, fullgraph=True, dynamic=False)}
    if device.type == "cuda":
        from spatial_ttt.ops.decode_attention_triton import TILE, decode_attention_triton

        for tile in [{}] + TILES:
            name = "triton " + json.dumps({**TILE, **tile}, separators=(",", ":"))
            kernels.setdefault(name, lambda *args, tile=tile: decode_attention_triton(*args, **tile))
    bytes_read = 2 * heads_kv * min(last + 1, slots) * dim * buffers[0].element_size()
    runs, expected = [], None
    for name, kernel in kernels.items():

        def call() -> None:
            for i, (keys, values) in enumerate(buffers):
                outs[i] = kernel(q, keys, values, where)

        ms = graph_ms(call, device, repeat) / ANCHORS
        run = dict(slots=slots, last=last, kernel=name, ms_per_layer=ms, gbps=bytes_read / ms / 1e6)
        if expected is None:
            expected = outs.clone()
        else:
            run["max_abs_diff"] = float((outs.float() - expected.float()).abs().max())
        print(json.dumps(run), flush=True)
        runs.append(run)
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
    parser.add_argument("--op", action="store_true", help="time the decode attention alone (no model)")
    parser.add_argument("--op-slots", nargs="+", help="--op cases: L or L:last (default 11000 98304 98304:88093; "
                        "tiny: 100 300:137)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if args.op:
        results = dict(shape="tiny" if args.tiny else "qwen3-vl-2b", device=str(device), layers=ANCHORS, runs=[])
        if device.type == "cuda":
            from common import environment

            results["env"] = environment()
        for case in args.op_slots or (["100", "300:137"] if args.tiny else ["11000", "98304", "98304:88093"]):
            results["runs"] += measure_op(case, args.repeat, device, args.tiny)
            write_json(args.out, results)
        for run in results["runs"]:
            print(f"{run['slots']} slots (last {run['last']}), {run['kernel']}: {run['ms_per_layer']:.4f} ms/layer, "
                  f"{run['gbps']:.0f} GB/s, max abs diff {run.get('max_abs_diff', 0):.2e}")
        for case in dict.fromkeys((run["slots"], run["last"]) for run in results["runs"]):
            runs = [run for run in results["runs"] if (run["slots"], run["last"]) == case]
            best = min(runs, key=lambda run: run["ms_per_layer"])
            print(f"fastest at {case[0]} slots (last {case[1]}): {best['kernel']}, "
                  f"{runs[0]['ms_per_layer'] / best['ms_per_layer']:.1f}x the reference's speed, "
                  f"{ANCHORS * best['ms_per_layer']:.3f} ms per token for the {ANCHORS} anchor layers")
        return
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
