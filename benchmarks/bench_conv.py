"""The spatial conv's stencil per call: the compiled reference (torch.compile of depthwise_conv3, what training and
the "compiled" kernel run) against the Triton kernel (what inference runs on CUDA), on the shapes of the user's path.

    PYTHONPATH=src:benchmarks python benchmarks/bench_conv.py --out conv.json          # one GPU, Qwen3-VL-2B shape
    PYTHONPATH=src:benchmarks python benchmarks/bench_conv.py --tiny --out conv.json   # CPU, seconds (tests)

Qwen3-VL-2B (common.py, as bench_e2e's shape_2b): conv width num_attention_heads * head_dim = 2048 channels,
352x480 frames = 11x15 tokens per temporal group (16 px patches, 2x2 merge), bf16. Cases, as the stencil sees
them (frames [1, n+2, 11, 15, C]: n groups between their neighbours):
  prefill_piece   a piece of a long prompt's prefill (config.prefill_piece tokens, 172 per group with its
                  5 timestamp tokens and vision start/end: 95 groups);
  stream_128      a 128-frame streaming piece (64 groups);  stream_32: the default 32-frame piece (16 groups).
Per case and stencil: ms per call (median of --repeat timed calls after warm-up; CUDA events) and GB/s counting
one read of the frames and one write of the output; copy_gbps: a plain copy of the same bytes (the ceiling);
the Triton kernel is also timed at a few tiles (``sweep``); ``max_abs_diff`` / ``differ``: Triton against the
compiled stencil. ``rows``: the form the model runs (conv_token_groups_triton): the same groups as rows of a
token sequence, 7 text rows before each (timestamps, vision start and end) and the neighbours in tensors of their
own, timed at the same tiles (its output: the same bits as the padded volume's). ``fp32_weight_ms``: the default
tile with the weight handed over in fp32 (exact; session 23's SASS count: 15 % fewer instructions a call, the
weights' bf16 unpacking gone, but twice the bytes of weight loads), in both forms. ``--tiny``: the tiny shape on the CPU, eager reference only (Triton and inductor need CUDA here).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch

from common import TEXT_2B, VISION_2B, write_json
from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.layers.spatial_conv import depthwise_conv3
from spatial_ttt.ops import FastWeightKernel

TILES = [dict(), dict(block_hw=32), dict(block_channels=128), dict(block_hw=32, block_channels=128),
         dict(block_hw=64), dict(block_hw=256, block_channels=16, num_warps=8), dict(num_warps=2),
         dict(num_warps=8), dict(block_t=4), dict(block_t=16), dict(block_hw=32, block_t=16),
         dict(block_hw=32, num_warps=8), dict(block_hw=32, num_warps=2), dict(block_hw=32, block_channels=32),
         dict(block_hw=64, block_channels=32), dict(block_hw=64, block_channels=32, num_warps=8),
         dict(block_hw=32, block_channels=32, block_t=16)]  # each over TILE


def cases(tiny: bool) -> tuple[int, tuple[int, int], dict[str, int], torch.dtype]:
    """Channels, tokens per group (h, w), groups per case, dtype."""
    if tiny:
        return 64, (3, 5), {"prefill_piece": 8, "stream_4": 2}, torch.float32
    merge, patch = VISION_2B["spatial_merge_size"], VISION_2B["patch_size"]
    hw = (352 // patch // merge, 480 // patch // merge)
    per_group = hw[0] * hw[1] + 7  # 5 timestamp tokens, vision start and end
    return (TEXT_2B["num_attention_heads"] * TEXT_2B["head_dim"], hw,
            {"prefill_piece": SpatialTTTConfig.prefill_piece // per_group, "stream_128": 64, "stream_32": 16}, torch.bfloat16)


def seconds_per_call(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    for _ in range(3):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeat)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    times = sorted(start.elapsed_time(end) / 1e3 for start, end in events)
    return times[len(times) // 2]


def token_rows(frames: torch.Tensor, weight: torch.Tensor, volume_out: torch.Tensor, device: torch.device,
               repeat: int) -> dict:
    """The Triton stencil as the model calls it: frames [1, n+2, h, w, C] as n groups of token rows with 7 text
    rows before each, the first and last frame as the neighbours."""
    from spatial_ttt.ops.conv_triton import TILE, conv_token_groups_triton

    _, padded, h, w, channels = frames.shape
    n, size, text = padded - 2, h * w, 7
    tokens = torch.randn(1, n * (size + text) + text, channels).to(device, frames.dtype)
    starts = torch.arange(n, device=device) * (size + text) + text
    rows = (starts[:, None] + torch.arange(size, device=device)).flatten()
    tokens[:, rows] = frames[:, 1:-1].reshape(1, n * size, channels)
    previous, following = (frames[:, i].reshape(1, size, channels) for i in (0, -1))
    call = lambda **tile: conv_token_groups_triton(tokens, starts, previous, following, (h, w), weight, **tile)
    seconds = seconds_per_call(call, device, repeat)
    moved = 2 * tokens.numel() * tokens.element_size()
    same = torch.equal(call()[:, rows].float(), volume_out.reshape(1, n * size, channels))
    fp32_weight = seconds_per_call(lambda: conv_token_groups_triton(
        tokens, starts, previous, following, (h, w), weight.float()), device, repeat)
    return dict(ms=1e3 * seconds, gbps=moved / seconds / 1e9, equal_to_volume=same, fp32_weight_ms=1e3 * fp32_weight, sweep=[
        dict(tile={**TILE, **tile}, ms=1e3 * seconds_per_call(lambda: call(**tile), device, repeat)) for tile in TILES])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="JSON file to write (rewritten after every case)")
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU: checks the script, in seconds")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per stencil (the median is reported)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    channels, (h, w), groups, dtype = cases(args.tiny)
    results = dict(shape="tiny" if args.tiny else "qwen3-vl-2b", device=str(device), dtype=str(dtype),
                   channels=channels, grid_hw=[h, w], runs=[])
    if device.type == "cuda":
        from common import environment

        from spatial_ttt.ops.conv_triton import TILE, depthwise_conv3_triton

        results["env"] = environment()
    for name, n in groups.items():
        g = torch.Generator().manual_seed(n)
        frames = torch.randn(1, n + 2, h, w, channels, generator=g).to(device, dtype)
        weight = torch.randn(channels, 1, 3, 3, 3, generator=g).to(device, dtype)
        moved = (frames.numel() + n * h * w * channels) * frames.element_size()
        run = dict(case=name, groups=n, tokens=n * h * w, frames_shape=list(frames.shape), bytes=moved)
        stencils = {"eager": depthwise_conv3}
        if device.type == "cuda":  # a kernel object of its own per case: dynamo compiles this shape statically
            stencils["compiled"] = FastWeightKernel.standalone(64, False).compiled(depthwise_conv3)
            stencils["triton"] = depthwise_conv3_triton
            copy_out = torch.empty_like(frames)
            run["copy_gbps"] = 2 * frames.numel() * frames.element_size() / seconds_per_call(
                lambda: copy_out.copy_(frames), device, args.repeat) / 1e9
        with torch.no_grad():
            for label, stencil in stencils.items():
                seconds = seconds_per_call(lambda: stencil(frames, weight), device, args.repeat)
                run[label] = dict(ms=1e3 * seconds, gbps=moved / seconds / 1e9)
            if "triton" in stencils:
                run["sweep"] = [dict(tile={**TILE, **tile}, ms=1e3 * seconds_per_call(
                    lambda: depthwise_conv3_triton(frames, weight, **tile), device, args.repeat)) for tile in TILES]
                ours = depthwise_conv3_triton(frames, weight).float()
                theirs = stencils["compiled"](frames, weight).float()
                run["max_abs_diff"] = (ours - theirs).abs().max().item()
                run["differ"] = (ours != theirs).float().mean().item()
                run["speedup"] = run["compiled"]["ms"] / run["triton"]["ms"]
                run["fp32_weight_ms"] = 1e3 * seconds_per_call(
                    lambda: depthwise_conv3_triton(frames, weight.float()), device, args.repeat)
                run["fp32_weight_equal"] = torch.equal(depthwise_conv3_triton(frames, weight.float()).float(), ours)
                run["rows"] = token_rows(frames, weight, ours, device, args.repeat)
        print(json.dumps(run), flush=True)
        results["runs"].append(run)
        write_json(args.out, results)


if __name__ == "__main__":
    main()
