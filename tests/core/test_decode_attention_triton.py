"""The Triton decode attention on the CPU, under Triton's interpreter (skipped without Triton; CI installs it). The
interpreter must be switched on before Triton is imported, so the checks run in a fresh process; the same checks
run natively on CUDA in tests/gpu/test_decode_attention.py."""

import pytest

from core.helpers import run_under_triton_interpreter

pytest.importorskip("triton")

# Two bugs of Triton 3.6's interpreter, fixed in the checking process only (compiled for a GPU, neither applies):
# - a scalar is a 1-element array there, made a loop bound by int(array), which NumPy >= 2.4 refuses: the kernel's
#   loop over its split's slots (bounds read from ``last`` on the device) needs .item();
# - bf16 is held as its uint16 bits there and tl.dot multiplies the bits: widen to fp32 first (exact).
SCRIPT = """
import numpy as np
import triton.language as tl
from triton.runtime import interpreter

patch = interpreter._patch_lang_tensor
def patched(tensor, scope):
    patch(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))
interpreter._patch_lang_tensor = patched

dot = interpreter.InterpreterBuilder.create_dot
def widened(handle):
    if handle.dtype.scalar != tl.bfloat16:
        return handle
    return interpreter.TensorHandle((handle.data.astype(np.uint32) << 16).view(np.float32), tl.float32)
interpreter.InterpreterBuilder.create_dot = lambda self, a, b, *rest: dot(self, widened(a), widened(b), *rest)

import torch
from gpu.test_decode_attention import SMALL, check_decode_attention
for shape in SMALL:
    for dtype in (torch.float32, torch.bfloat16):
        check_decode_attention(shape, dtype, "cpu", truncating=True)
print("ok")
"""


def test_triton_decode_attention_equals_the_reference_under_the_interpreter():
    run_under_triton_interpreter(SCRIPT)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("group", [1, 2, 3])
def test_triton_decode_attention_compiles_for_an_h100(dtype, group):
    """What the interpreter does not check: Triton's compiler down to sm_90 machine code, for the default tile,
    the 2B model's head dim and GQA groups of 1, 2 (the 2B model) and 3 (query rows padded to 16). No GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from spatial_ttt.ops.decode_attention_triton import TILE, _merge_kernel, _split_kernel

    target, options = GPUTarget("cuda", 90, 32), {"num_warps": TILE["num_warps"], "num_stages": TILE["num_stages"]}
    ints = ["L", "SPLITS", "HEADS_KV", "stride_qb", "stride_qh", "stride_kb", "stride_kh", "stride_kl", "stride_vb",
            "stride_vh", "stride_vl"]
    signature = {"q": f"*{dtype}", "k": f"*{dtype}", "v": f"*{dtype}", "last": "*i64", "acc_out": "*fp32",
                 "max_out": "*fp32", "sum_out": "*fp32", **{name: "i32" for name in ints}}
    constants = dict(GROUP=group, GROUP_PAD=16, DIM=128, BLOCK=TILE["block"], SCALE=128**-0.5)  # tl.dot: 16 rows
    signature.update({name: "constexpr" for name in constants})
    # the pointers, L and the strides: multiples of 16 at the 2B shape, which Triton specialises on at launch
    aligned = {(i,): [["tt.divisibility", 16]] for i in (0, 1, 2, 4, 5, 6, 7, *range(10, 18))}
    source = ASTSource(fn=_split_kernel, signature=signature, constexprs=constants, attrs=aligned)
    kernel = triton.compile(source, target=target, options=options)
    ptx = kernel.asm["ptx"]
    # K/V stream into shared memory ahead of use (software-pipelined copies of 16 bytes), then bf16 tensor cores
    assert kernel.asm["cubin"] and "cp.async.cg.shared.global" in ptx and "0x10" in ptx
    assert ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in ptx) == (dtype == "bf16")
    signature = {"acc_in": "*fp32", "max_in": "*fp32", "sum_in": "*fp32", "out": f"*{dtype}", "SPLITS": "i32",
                 "SPLITS_PAD": "constexpr", "DIM": "constexpr"}
    constants = dict(SPLITS_PAD=TILE["splits"], DIM=128)
    source = ASTSource(fn=_merge_kernel, signature=signature, constexprs=constants)
    assert triton.compile(source, target=target, options=options).asm["cubin"]


def test_triton_decode_attention_names_what_it_cannot_run():
    import torch

    from spatial_ttt.ops.decode_attention_triton import decode_attention_triton

    q, keys = torch.zeros(1, 4, 1, 8), torch.zeros(1, 2, 5, 8)
    with pytest.raises(ValueError, match=r"head dim >= 16 .* got head dim 8 and last strides \[1, 1, 1\]"):
        decode_attention_triton(q, keys, keys, torch.tensor([4]))
    q, keys = torch.zeros(1, 4, 1, 16), torch.zeros(1, 2, 16, 5).transpose(2, 3)
    with pytest.raises(ValueError, match=r"got head dim 16 and last strides \[1, 5, 5\]"):
        decode_attention_triton(q, keys, keys, torch.tensor([4]))


class Traced(Exception):
    """Stops a compilation once its graph is seen (the kernels need a GPU to run)."""


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_the_op_becomes_its_two_triton_kernels(dynamic):
    """What static_decode's compiled step holds, traced on the CPU (not run): after the write of the token's slot,
    the op as its split and merge kernels, with no graph break (fullgraph); ``dynamic``: symbolic shapes, as a
    later decode's longer buffer makes them."""
    import torch
    from torch._dynamo.backends.common import aot_autograd

    from spatial_ttt.ops.decode_attention_triton import decode_attention_triton

    graphs = []

    def seen(graph, example):
        graphs.append(graph.code)
        raise Traced

    def step(q, keys, values, last):
        keys[:, :, last] = q[:, ::2]  # as attend_static writes the token's slot, then attends
        return decode_attention_triton(q, keys, values, last)

    q, keys = torch.randn(2, 16, 1, 128, dtype=torch.bfloat16), torch.randn(2, 8, 300, 128, dtype=torch.bfloat16)
    compiled = torch.compile(step, backend=aot_autograd(fw_compiler=seen), fullgraph=True, dynamic=dynamic)
    with pytest.raises(Exception, match="Traced"):
        compiled(q, keys, keys.clone(), torch.tensor([5]))
    kernels = [line for line in graphs[0].splitlines() if "triton_kernel_wrapper_functional(" in line]
    assert len(kernels) == 2
    assert "'GROUP': 2, 'GROUP_PAD': 16, 'DIM': 128, 'BLOCK': 32" in kernels[0] and "'SPLITS_PAD': 64" in kernels[1]
    assert graphs[0].index("index_put") < graphs[0].index("triton_kernel_wrapper_functional")
