"""The decoder's RMSNorm: Qwen3-VL's numbers bit for bit when eager; one compiled function where the model's kernel
runs "graphed" without autograd (inductor's C++ backend on the CPU here, Triton on a GPU)."""

import pytest
import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm

from spatial_ttt.layers.norm import RMSNorm, rms_norm
from spatial_ttt.ops import FastWeightKernel
from spatial_ttt.tiny import tiny_model


def pair(width: int, dtype: torch.dtype) -> tuple[RMSNorm, Qwen3VLTextRMSNorm]:
    ours, theirs = RMSNorm(width, eps=1e-6), Qwen3VLTextRMSNorm(width, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_(1.0, 0.3)
        theirs.weight.copy_(ours.weight)
    return ours.to(dtype), theirs.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 9, 64), (2, 9, 4, 16)])  # hidden rows; per-head q/k rows
def test_eager_norm_is_qwen3vl_bit_for_bit(dtype, shape):
    ours, theirs = pair(shape[-1], dtype)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    assert torch.equal(ours(x), theirs(x))
    ours.kernel = FastWeightKernel.standalone(8, False, kernel="reference")  # the reference kernel: eager too
    assert torch.equal(ours(x), theirs(x)) and not ours.kernel._compiled


def test_graphed_kernel_compiles_the_norm_only_without_autograd():
    ours, theirs = pair(64, torch.bfloat16)
    ours.kernel = kernel = FastWeightKernel.standalone(8, False, kernel="graphed")
    x = (torch.randn(3, 11, 64, generator=torch.Generator().manual_seed(1)) * 3).to(torch.bfloat16)
    expected = theirs(x)
    with torch.no_grad():
        got = ours(x)
    assert any(key[0] is rms_norm for key in kernel._compiled)  # the compiled function ran (fn, variant, dynamic)
    # fused, the fp32 statistics round differently at most in the last bf16 place of an output
    torch.testing.assert_close(got, expected, atol=0, rtol=2**-7)
    kernel._compiled.clear()
    x.requires_grad_(True)  # autograd records: the graphed kernel does not run, neither does the compiled norm
    assert torch.equal(ours(x), theirs(x)) and not kernel._compiled


def test_every_decoder_norm_uses_the_models_kernel():
    model = tiny_model()
    text = model.model.language_model
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    # per layer: input and post-attention norms, the attention's q and k norms (a TTT layer's window attention
    # too); plus the final norm
    assert len(norms) == 4 * len(text.layers) + 1
    assert all(norm.kernel is text.kernel for norm in norms)


@torch._dynamo.config.patch(recompile_limit=2)  # (monkeypatch would delete the setting afterwards)
def test_callers_under_no_grad_and_inference_mode_do_not_exhaust_the_recompile_limit():
    """Was (session 14, the full GPU test run): one compiled norm for all of a model's callers; ranks 3 and 4,
    inference and ordinary tensors, new lengths and batches each recompiled the same code object until dynamo's
    recompile limit, where a fullgraph function raises. Now one compiled copy per kind of input
    (ops.compiled.input_kind): only new sizes recompile, once. Limit 2 here (8 in torch)."""
    torch._dynamo.reset()
    ours, theirs = pair(16, torch.float32)
    ours.kernel = kernel = FastWeightKernel.standalone(8, False, kernel="graphed")
    generator = torch.Generator().manual_seed(2)
    for batch, length in ((1, 5), (1, 9), (2, 7), (1, 12), (3, 4)):
        for shape in ((batch, length, 16), (batch, length, 2, 16)):
            for mode in (torch.no_grad, torch.inference_mode):
                with mode():
                    x = torch.randn(shape, generator=generator)
                    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)
    (compiled,) = [c for key, c in kernel._compiled.items() if key[0] is rms_norm]
    assert len(compiled.variants) == 8  # 2 ranks x inference or not x a batch of 1 or more
