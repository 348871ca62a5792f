"""Small inputs and runners shared by the core tests."""

import os
import subprocess
import sys
from pathlib import Path

import torch


def video_prompt(frames_groups: int = 2, grid_hw: int = 4, text_before: int = 3, text_after: int = 5, batch: int = 1):
    """A Qwen3-VL-style prompt for the tiny config: per temporal group a timestamp token, vision_start,
    (grid_hw/2)^2 video tokens, vision_end; random pixels; returns the model inputs."""
    merged = (grid_hw // 2) ** 2
    ids = list(range(7, 7 + text_before))
    for t in range(frames_groups):
        ids += [20 + t, 502] + [501] * merged + [503]
    ids += list(range(40, 40 + text_after))
    input_ids = torch.tensor([ids] * batch)
    patches = frames_groups * grid_hw * grid_hw
    pixels = torch.randn(batch * patches, 3 * 2 * 16 * 16)
    grid = torch.tensor([[frames_groups, grid_hw, grid_hw]] * batch)
    return {"input_ids": input_ids, "pixel_values_videos": pixels, "video_grid_thw": grid}


def run_under_triton_interpreter(script: str) -> None:
    """Runs ``script`` in a fresh process with Triton's CPU interpreter on (it must be switched on before Triton is
    imported) and the tests folder importable; the script prints "ok" when its checks pass."""
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(tests)}
    run = subprocess.run([sys.executable, "-c", script], cwd=tests, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
