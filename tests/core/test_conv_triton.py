"""The Triton stencil of the spatial conv on the CPU, under Triton's interpreter (skipped without Triton; CI
installs it). The interpreter must be switched on before Triton is imported, so the checks run in a fresh process;
the same checks run natively on CUDA in tests/gpu/test_conv_triton.py."""

import pytest

from core.helpers import run_under_triton_interpreter

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
    run_under_triton_interpreter(SCRIPT)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("ones", [(), ("T",), ("H", "W")])
def test_triton_stencil_compiles_for_an_h100(dtype, ones):
    """What the interpreter does not check: Triton's compiler down to sm_90 machine code, for the default tile and
    the integer arguments it turns into constants when they equal 1 (a 1-group piece, a 1x1 frame). No GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from spatial_ttt.ops.conv_triton import TILE, _conv3_kernel

    ints = ["T", "H", "W", "C", "stride_n", "stride_t", "stride_h", "stride_w"]
    signature = {"x": f"*{dtype}", "weight": f"*{dtype}", "out": f"*{dtype}"}
    signature.update({name: "constexpr" if name in ones else "i32" for name in ints})
    constants = {name: 1 for name in ones}
    constants.update(stride_c=1, BLOCK_HW=TILE["block_hw"], BLOCK_C=TILE["block_channels"],
                     BLOCK_T=1 if "T" in ones else TILE["block_t"])
    signature.update({name: "constexpr" for name in ("stride_c", "BLOCK_HW", "BLOCK_C", "BLOCK_T")})
    aligned = {(i,): [["tt.divisibility", 16]] for i in (0, 1, 2, 6)}  # the pointers and C
    source = ASTSource(fn=_conv3_kernel, signature=signature, constexprs=constants, attrs=aligned)
    kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": TILE["num_warps"]})
    assert kernel.asm["cubin"] and "ld.global.v4" in kernel.asm["ptx"]  # vector loads: 16 bytes of channels
