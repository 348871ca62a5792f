"""benchmarks/bench_processor.py on the CPU: every variant's pixels are the plain math's, timed per thread count;
the GPU-only scripts beside it say so on a machine without CUDA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")


def test_bench_processor_checks_and_times_every_variant(tmp_path):
    out = tmp_path / "processor.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_processor.py"), "--frames", "3", "--threads", "1", "2",
           "--repeat", "1", "--out", str(out)]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    variants = ["plain", "fp32", "bf16"] + (["bf16_pinned", "gpu"] if torch.cuda.is_available() else [])
    assert [(r["threads"], r["variant"]) for r in runs] == [(n, v) for n in (1, 2) for v in variants]
    assert all(r["exact"] and r["seconds"] > 0 and len(r["all_s"]) == 2 and r["frames"] == 3 for r in runs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("script,args", [("after_cache_memory.py", []), ("bench_h2d.py", ["--out", "out.json"])])
def test_gpu_only_scripts_say_they_need_cuda(script, args, tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0 and "CUDA GPU" in result.stdout + result.stderr
