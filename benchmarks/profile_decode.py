"""Where a decoded token's time goes: the static (graphed) decode after a long text prompt, through the path
``generate`` takes (:func:`spatial_ttt.generation.decode`: greedy, no stop tokens, so nothing is read back per token).

    PYTHONPATH=src:benchmarks python benchmarks/profile_decode.py --prompt-tokens 88000 --tokens 128 --out profile_decode.json   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/profile_decode.py --tiny --out profile_decode.json   # CPU, seconds (tests)

bench_e2e.py's model (random weights of the Qwen3-VL-2B shape in bf16, released settings, Muon off; ``--tiny``: the
tiny test shape in fp32 on the CPU, where the static step runs uncompiled and uncaptured), ``decode_kernel="graphed"``.
One prefill of a random text prompt of --prompt-tokens tokens, as ``generate`` runs it (the anchor caches planned for
the decode; 88,000 tokens is about a 1024-frame prompt), then decodes of --tokens tokens from copies of its state: a
warm-up (compilation, the chunk graphs' capture), a timed decode whose steps and updates are timed too (two clock
marks each: a few microseconds of host time), and on a GPU a short decode whose replays are profiled one at a time.
Fields:

  fed                    tokens fed to the step: a decode of n tokens feeds n - 1 (the last is not fed)
  decode_s               the timed generation.decode call, synchronised
  setup_s                the static decoder's setup in it (buffers built, step captured: the first fed token)
  ms_per_token           decode_s / fed
  ms_per_token_steady    (decode_s - setup_s) / fed
  replay_ms              median of one step (token copied in, graph replayed, logits copied out): CUDA events
                         around it on a GPU, the wall clock on the CPU; replay_ms_mean, their mean
  host_ms_per_token      ms_per_token_steady - replay_ms_mean: the rest of a token (choosing it, the fast-weight
                         updates spread over the tokens, the GPU waiting for the host)
  updates, update_ms     the decode rule's fast-weight updates between steps (after the first fed token, then every
                         C), and the time of each (events / wall clock); update_ms_per_token: their sum / fed
  kernels_per_replay     CUDA kernels in one replay (torch.profiler over --profile-steps replays, each profiled
                         alone; memcpy and memset are not kernels); replay_kernels: the replay's kernels by GPU
                         time (--top). Both null on the CPU.
  same_tokens            whether the timed decode chose the warm-up's tokens
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import time
from collections import defaultdict

import torch

from bench_e2e import build_ours, shape_2b, shape_tiny
from common import write_json

from spatial_ttt import generation
from spatial_ttt.static_decode import StaticDecoder


class Clock:
    """Marks on the device's timeline: CUDA events on a GPU, the wall clock on the CPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self, begin, end) -> float:
        return begin.elapsed_time(end) if self.cuda else 1e3 * (end - begin)


@contextlib.contextmanager
def timed_steps(clock: Clock):
    """Times every StaticDecoder replay and fast-weight update made inside the block: {"replay": [(begin, end)],
    "update": [...]} of clock marks."""
    marks: dict[str, list] = {"replay": [], "update": []}
    originals = {name: getattr(StaticDecoder, f"_{name}") for name in marks}

    def timed(name: str):
        original = originals[name]

        def run(decoder, *args):
            begin = clock.mark()
            out = original(decoder, *args)
            marks[name].append((begin, clock.mark()))
            return out

        return run

    for name in marks:
        setattr(StaticDecoder, f"_{name}", timed(name))
    try:
        yield marks
    finally:
        for name, original in originals.items():
            setattr(StaticDecoder, f"_{name}", original)


@contextlib.contextmanager
def profiled_replays(steps: int, top: int):
    """Profiles ``steps`` replays one at a time (not the first, which follows the capture): {"counts": kernels per
    replay, "kernels": the top kernels by GPU time}, filled when the block ends."""
    from torch.autograd import DeviceType

    counts: list[int] = []
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    original = StaticDecoder._replay

    def run(decoder, token):
        if decoder.fed == 0 or len(counts) >= steps:
            return original(decoder, token)
        torch.cuda.synchronize()
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as prof:
            out = original(decoder, token)
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA
                   and not e.name.startswith(("Memcpy", "Memset"))]
        counts.append(len(kernels))
        for e in kernels:
            by_name[e.name[:120]][0] += 1
            by_name[e.name[:120]][1] += e.time_range.elapsed_us() / 1e3
        return out

    result: dict = {}
    StaticDecoder._replay = run
    try:
        yield result
    finally:
        StaticDecoder._replay = original
        ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:top]
        result["counts"] = counts
        result["kernels"] = [dict(name=name, calls=calls / len(counts), ms=ms / len(counts))
                             for name, (calls, ms) in ranked] if counts else []


def decode(model, state, logits, tokens: int, clock: Clock) -> tuple[torch.Tensor, float]:
    """Greedy new tokens from a copy of ``state``, and the seconds of the generation.decode call."""
    fresh = copy.deepcopy(state)
    gc.collect()
    clock.sync()
    began = time.perf_counter()
    new = generation.decode(model, fresh, logits, tokens)
    clock.sync()
    return new, time.perf_counter() - began


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON file to write")
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU: checks the script, in seconds")
    parser.add_argument("--prompt-tokens", type=int, help="text prompt length (default 88000; tiny: 40)")
    parser.add_argument("--tokens", type=int, help="new tokens per decode (default 128; tiny: 20)")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="fast_weight_precision")
    parser.add_argument("--profile-steps", type=int, default=3, help="replays profiled for their kernels (GPU)")
    parser.add_argument("--top", type=int, default=15, help="kernels listed by GPU time")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    prompt_tokens = args.prompt_tokens or (40 if args.tiny else 88000)
    tokens = args.tokens or (20 if args.tiny else 128)
    if tokens < 3:
        parser.error("--tokens must be at least 3 (a step after the one that captures it)")
    clock = Clock(cuda)
    model = build_ours(shape_tiny() if args.tiny else shape_2b(), device, args.precision, decode_kernel="graphed")
    high = min(100000, model.config.image_token_id)
    ids = torch.randint(10, high, (1, prompt_tokens), generator=torch.Generator().manual_seed(0)).to(device)
    state = model.new_state(1)
    began = time.perf_counter()
    logits = generation.prefill(model, state, ids, decode_tokens=tokens - 1)
    clock.sync()
    prefill_s = time.perf_counter() - began

    warm, _ = decode(model, state, logits, tokens, clock)  # compilation, the chunk graphs' capture
    with timed_steps(clock) as marks:
        new, decode_s = decode(model, state, logits, tokens, clock)
    last = dict(model.static_decoding.last)
    replay_ms = [clock.ms(*m) for m in marks["replay"]]
    update_ms = [clock.ms(*m) for m in marks["update"]]
    kernels = None
    if cuda and args.profile_steps > 0:
        with profiled_replays(args.profile_steps, args.top) as kernels:
            decode(model, state, logits, args.profile_steps + 2, clock)

    fed = tokens - 1
    steady = 1e3 * (decode_s - last["setup_s"]) / fed
    replay_mean = sum(replay_ms) / len(replay_ms)
    result = dict(
        shape="tiny" if args.tiny else "qwen3-vl-2b", device=torch.cuda.get_device_name(0) if cuda else "cpu",
        precision=args.precision, prompt_tokens=prompt_tokens, tokens=tokens, fed=fed, prefill_s=prefill_s,
        kernel=last["kernel"], captured=last["captured"], decode_s=decode_s, setup_s=last["setup_s"],
        ms_per_token=1e3 * decode_s / fed, ms_per_token_steady=steady, replays=len(replay_ms),
        replay_ms=median(replay_ms), replay_ms_mean=replay_mean, host_ms_per_token=steady - replay_mean,
        updates=len(update_ms), update_ms=update_ms, update_ms_per_token=sum(update_ms) / fed,
        kernels_per_replay=median(kernels["counts"]) if kernels else None,
        kernels_counted=kernels["counts"] if kernels else None,
        replay_kernels=kernels["kernels"] if kernels else None,
        same_tokens=new.tolist() == warm.tolist(),
    )
    if cuda:
        from common import environment

        result["env"] = environment()
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("replay_kernels", "env")}))
    print(f"{prompt_tokens} prompt tokens, {fed} fed: {result['ms_per_token']:.2f} ms/token "
          f"({steady:.2f} without the {last['setup_s']:.3f} s setup) = replay {replay_mean:.2f} + rest "
          f"{result['host_ms_per_token']:.2f}; {len(update_ms)} updates of {median(update_ms) if update_ms else 0:.2f} ms; "
          f"kernels per replay: {result['kernels_per_replay']}")
    for k in result["replay_kernels"] or []:
        print(f"{k['ms']:8.3f} ms {k['calls']:6.1f}x  {k['name']}")


if __name__ == "__main__":
    main()
