"""The Triton stencil of the spatial conv on the CPU, under Triton's interpreter (skipped without Triton; CI
installs it). The interpreter must be switched on before Triton is imported, so the checks run in a fresh process;
the same checks run natively on CUDA in tests/gpu/test_conv_triton.py."""

import sys
from pathlib import Path

import pytest

from core.helpers import run_under_triton_interpreter

pytest.importorskip("triton")
# the sm_90 compile set-up of the compile tests below is benchmarks/conv_sass.py's (one copy for both)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from conv_sass import compile_for_h100  # noqa: E402

SCRIPT = """
import torch
from gpu.test_conv_triton import GROUPS, SMALL, check_stencil, check_token_groups
for shape in SMALL:
    for dtype in (torch.float32, torch.bfloat16):
        check_stencil(shape, dtype, "cpu", truncating=True)
for case in GROUPS:
    for dtype in (torch.float32, torch.bfloat16):
        check_token_groups(case, dtype, "cpu", truncating=True)
for layout in ("channel slice", "permuted"):
    check_stencil(((2,), 2, 5, 7, 96), torch.float32, "cpu", layout)
print("ok")
"""


def test_triton_stencil_equals_the_reference_under_the_interpreter():
    run_under_triton_interpreter(SCRIPT)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_triton_stencil_compiles_for_an_h100(dtype):
    """What the interpreter does not check: Triton's compiler down to sm_90 machine code, for the default tile and
    the arguments as a launch specialises them (frame counts and sizes as plain integers, whatever their value).
    No GPU needed."""
    from spatial_ttt.ops.conv_triton import TILE, _conv3_kernel

    tensors = {name: f"*{dtype}" for name in ("x", "first", "last", "out", "weight")}
    pointers = tensors | {"frames": "*i64", "out_frames": "*i64"}  # the frames' rows
    constants = dict(stride_c=1, BLOCK_HW=TILE["block_hw"], BLOCK_C=TILE["block_channels"], BLOCK_T=TILE["block_t"])
    kernel = compile_for_h100(_conv3_kernel, pointers, set(tensors), constants, TILE["num_warps"])
    ptx = kernel.asm["ptx"]
    # every load of taps and weights 16 bytes of channels, whichever tensor the frame is in (the frame's pointer
    # chosen at run time must not cost the taps their vectorisation); the only others: the two rows of the tables
    loads = [word for line in ptx.splitlines() for word in line.split() if word.startswith("ld.global")]
    assert kernel.asm["cubin"] and "st.global.v4" in ptx
    assert len(loads) > 2 and sorted(op for op in loads if ".v4." not in op) == ["ld.global.b64"] * 2, loads


def test_the_gap_copy_compiles_for_an_h100():
    """The copy of the rows between frame groups (a loop over rows whose bounds it loads) down to sm_90 machine code,
    its rows of channels moved 16 bytes at a time; the rows and groups are not specialised (a new piece is no new
    compilation). No GPU needed."""
    from spatial_ttt.ops.conv_triton import GAP_TILE, _copy_gaps_kernel

    assert [p.name for p in _copy_gaps_kernel.params if p.do_not_specialize] == ["n", "L"]
    constants = dict(stride_c=1, BLOCK_R=GAP_TILE["block_rows"], BLOCK_C=GAP_TILE["block_channels"])
    pointers = {"x": "*bf16", "out": "*bf16", "starts": "*i64"}
    kernel = compile_for_h100(_copy_gaps_kernel, pointers, {"x", "out"}, constants, GAP_TILE["num_warps"])
    assert "ld.global.v4" in kernel.asm["ptx"] and "st.global.v4" in kernel.asm["ptx"]


def test_one_compilation_serves_every_frame_count_and_size(monkeypatch):
    """Was: BLOCK_T = min(8, T) (a constexpr) and T, H, W specialised by Triton (equal to 1, divisible by 16): a
    stream's first question compiled the kernel 7 times, 4.6 s of its 6.5 s on an H200 (session 18). Now a launch's
    constants do not depend on T, H or W, and Triton specialises on none of them."""
    import torch

    import spatial_ttt.ops.conv_triton as conv

    specialised = [p.name for p in conv._conv3_kernel.params if p.do_not_specialize]
    assert specialised == ["T", "H", "W", "has_first", "has_last"]
    launches = []

    class Recorder:  # stands in for the kernel: records each launch's constants, runs nothing
        def __getitem__(self, grid):
            return lambda *args, **constants: launches.append(constants)

    monkeypatch.setattr(conv, "_conv3_kernel", Recorder())
    for t in range(1, 18):
        for h, w in ((1, 1), (3, 5), (16, 16)):
            conv.depthwise_conv3_triton(torch.zeros(1, t + 2, h, w, 64), torch.zeros(64, 1, 3, 3, 3))
    assert len(launches) == 51 and all(c == launches[0] for c in launches)
    assert launches[0]["BLOCK_T"] == conv.TILE["block_t"]
