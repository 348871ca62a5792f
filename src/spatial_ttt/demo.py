"""The embedded default job: a tiny untrained model, a synthetic video, prefill and generation, with timings."""

from __future__ import annotations

import time

import torch
from rich.console import Console

from .tiny import tiny_model


def synthetic_video_inputs(frame_groups: int, grid_hw: int, question_tokens: int) -> dict[str, torch.Tensor]:
    """Qwen3-VL inputs for the tiny vocabulary: per temporal group a timestamp token, vision_start,
    (grid/2)^2 video tokens, vision_end; pixels of a moving gradient pattern."""
    merged = (grid_hw // 2) ** 2
    ids: list[int] = [7, 8, 9]
    for t in range(frame_groups):
        ids += [20 + t % 100, 502] + [501] * merged + [503]
    ids += list(range(40, 40 + question_tokens))
    t = torch.arange(frame_groups * grid_hw * grid_hw, dtype=torch.float32)
    pixels = torch.sin(t[:, None] * 0.01 + torch.linspace(0, 6.28, 3 * 2 * 16 * 16)[None, :])
    return {
        "input_ids": torch.tensor([ids]),
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[frame_groups, grid_hw, grid_hw]]),
    }


def run_demo(console: Console) -> None:
    console.print("[bold]spatial-ttt demo[/]: embedded tiny model, [yellow]untrained random weights[/] "
                  "(answers are meaningless; this shows the pipeline runs end to end)")
    start = time.perf_counter()
    model = tiny_model(seed=0)
    console.print(f"built tiny Spatial-TTT ({sum(p.numel() for p in model.parameters()):,} parameters, "
                  f"TTT layers {model.config.ttt_layers}) in {time.perf_counter() - start:.2f}s")
    inputs = synthetic_video_inputs(frame_groups=16, grid_hw=8, question_tokens=6)
    start = time.perf_counter()
    out = model.generate(**inputs, max_new_tokens=8)
    elapsed = time.perf_counter() - start
    prompt = inputs["input_ids"].shape[1]
    console.print(f"prefilled {prompt} tokens (16 frame pairs of 16 video tokens) and generated 8 tokens "
                  f"in {elapsed:.2f}s: {out[0, prompt:].tolist()}")
