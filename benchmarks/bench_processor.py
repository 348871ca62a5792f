"""The video processor alone: uint8 frames -> normalised pixel patches, as SpatialTTTPipeline.inputs runs it.

    PYTHONPATH=src:benchmarks python benchmarks/bench_processor.py --out processor.json
    PYTHONPATH=src:benchmarks python benchmarks/bench_processor.py --frames 8 --threads 1 --out p.json   # seconds

Per frame count (352x480 frames, Qwen3-VL's patching) and torch CPU thread count, the median seconds of --repeat
calls after one warm-up call of:
  plain      the processor's math written plainly (normalise whole fp32 frames, then reorder; the library's code
             until session 15, kept here as the baseline);
  fp32       TorchVideoProcessor.patchify, fp32 in pageable memory (its default);
  bf16       the same in bf16 (what a bf16 vision tower casts to);
  bf16_pinned  bf16 in pinned memory (the pipeline on CUDA: pixel_target);
  gpu        the frames copied to the GPU as uint8 and processed there by the same code (an alternative a
             processor could offer: a quarter of the bytes cross PCIe, the pixels end up on the device).
Every variant's pixels are checked against plain (bit for bit after the cast) before it is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spatial_ttt.video.patches import TorchVideoProcessor

from common import write_json  # noqa: E402


def plain(vp: TorchVideoProcessor, frames: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(vp.image_mean, device=frames.device) * (1.0 / vp.rescale_factor)
    std = torch.tensor(vp.image_std, device=frames.device) * (1.0 / vp.rescale_factor)
    x = (frames.permute(0, 3, 1, 2).float() - mean[:, None, None]) / std[:, None, None]
    if pad := -x.shape[0] % vp.temporal_patch_size:  # an odd last frame repeated
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
    tp, p, m = vp.temporal_patch_size, vp.patch_size, vp.merge_size
    gt, c, gh, gw = x.shape[0] // tp, x.shape[1], x.shape[2] // p, x.shape[3] // p
    x = x.view(gt, tp, c, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tp * p * p)


def variants(vp: TorchVideoProcessor, frames: torch.Tensor) -> dict:
    cuda = torch.cuda.is_available()
    out = {
        "plain": lambda: plain(vp, frames),
        "fp32": lambda: vp.patchify(frames)[0],
        "bf16": lambda: vp.patchify(frames, torch.bfloat16)[0],
    }
    if cuda:
        out["bf16_pinned"] = lambda: vp.patchify(frames, torch.bfloat16, pin_memory=True)[0]
        out["gpu"] = lambda: plain(vp, frames.cuda()).to(torch.bfloat16)
    return out


def timed(fn, repeat: int) -> tuple[torch.Tensor, float, list[float]]:
    seconds = []
    for _ in range(repeat + 1):  # the first call allocates what later ones reuse (pinned blocks, pages)
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds[1:]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--threads", type=int, nargs="+", help="torch CPU threads (default: 1, 4, 16 and all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cores = torch.get_num_threads()
    threads = args.threads or sorted({1, min(4, cores), min(16, cores), cores})
    vp = TorchVideoProcessor()
    result = dict(cores=cores, frame_hw=[352, 480], gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                  runs=[])
    for count in args.frames:
        frames = torch.randint(0, 256, (count, 352, 480, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        for n in threads:
            torch.set_num_threads(n)
            expected = None
            for name, fn in variants(vp, frames).items():
                pixels, seconds, all_seconds = timed(fn, args.repeat)
                if expected is None:
                    expected = pixels
                exact = torch.equal(pixels.cpu(), expected.to(pixels.dtype))
                run = dict(frames=count, threads=n, variant=name, seconds=seconds, all_s=all_seconds, exact=exact)
                print(run, flush=True)
                result["runs"].append(run)
                del pixels
                write_json(args.out, result)
            del expected


if __name__ == "__main__":
    main()
