"""Shared helpers of the GPU benchmarks: environment report, timing, the measured bf16 matmul peak."""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path

import torch

from spatial_ttt.files import atomic_write_json


def child_environment(cache: Path) -> dict[str, str]:
    """The environment for a child process that compiles into caches of its own under ``cache`` (inductor's and
    Triton's): cold for the first child given the folder, warm for the next, never the user's."""
    return dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"), TRITON_CACHE_DIR=str(cache / "triton"))


def environment() -> dict:
    import transformers

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    props = torch.cuda.get_device_properties(0)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def cuda_time(fn, warmup: int = 1, repeat: int = 3) -> list[float]:
    """Seconds per call of fn (synchronised wall clock around each call, after warm-up calls)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def matmul_peak(n: int = 8192, repeat: int = 20) -> float:
    """Measured bf16 dense matmul rate (TFLOP/s) on random data: the ceiling used for every percentage."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    rates = []
    for _ in range(repeat):
        start.record()
        a @ b
        end.record()
        end.synchronize()
        rates.append(2 * n**3 / (start.elapsed_time(end) / 1e3) / 1e12)
    del a, b
    return median(rates)


def write_json(path: str | None, payload: dict) -> None:
    """``payload`` to ``path`` (nothing without a path), atomically: a reader never sees half a file."""
    if path:
        atomic_write_json(path, payload, indent=2)


# spec/official-model.md, "Qwen3-VL-2B shape"
TEXT_2B = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6, tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
)
VISION_2B = dict(
    depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16, spatial_merge_size=2,
    temporal_patch_size=2, out_hidden_size=2048, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17],
    in_channels=3,
)
IDS_2B = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
