"""The Triton stencil of the spatial conv on the CPU, under Triton's interpreter (skipped without Triton, as on
CI). The interpreter must be switched on before Triton is imported, so the checks run in a fresh process; the
same checks run natively on CUDA in tests/gpu/test_conv_triton.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

SCRIPT = """
import torch
from gpu.test_conv_triton import SMALL, check_stencil
for shape in SMALL:
    for dtype in (torch.float32, torch.bfloat16):
        check_stencil(shape, dtype, "cpu", truncating=True)
for layout in ("channel slice", "permuted"):
    check_stencil(((2,), 2, 5, 7, 96), torch.float32, "cpu", layout)
print("ok")
"""


def test_triton_stencil_equals_the_reference_under_the_interpreter():
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(tests)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tests, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
