"""The decoder's RMSNorms compiled on CUDA (layers/norm.py, where the graphed kernel runs) against Qwen3-VL's eager
norm, alone and through a model's generate. The CPU checks are tests/core/test_norm.py."""

import pytest
import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm

from spatial_ttt.layers.norm import RMSNorm, rms_norm
from spatial_ttt.ops import FastWeightKernel
from spatial_ttt.tiny import tiny_model

from core.helpers import video_prompt

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("shape", [(1, 16384, 2048), (1, 4096, 2048), (1, 11038, 16, 128), (1, 3, 8, 128)])
def test_compiled_norm_is_qwen3vl_to_one_bf16_step(shape):
    """The 2B shapes a prefill meets (hidden rows, MLP pieces, per-head q and k, a short text run)."""
    ours, theirs = RMSNorm(shape[-1]).cuda(), Qwen3VLTextRMSNorm(shape[-1]).cuda()
    with torch.no_grad():
        ours.weight.normal_(1.0, 0.3)
        theirs.weight.copy_(ours.weight)
    ours, theirs = ours.bfloat16(), theirs.bfloat16()
    ours.kernel = kernel = FastWeightKernel.standalone(8, False, kernel="auto")  # graphed on CUDA, no autograd
    x = (torch.randn(shape, device="cuda") * 3).bfloat16()
    with torch.inference_mode():
        got, expected = ours(x), theirs(x)
    assert any(key[0] is rms_norm for key in kernel._compiled)
    torch.testing.assert_close(got, expected, atol=0, rtol=2**-7)


@cuda
def test_generate_gives_the_same_tokens_with_compiled_and_eager_norms():
    model = tiny_model(lact_chunk_size=8, use_muon=False).cuda()
    inputs = {k: v.cuda() for k, v in video_prompt(frames_groups=4, grid_hw=4).items()}
    compiled = model.generate(**inputs, max_new_tokens=8)[0, -8:].tolist()
    assert model.model.language_model.kernel._compiled  # something compiled: at least the norms
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    for norm in norms:
        norm.kernel = None
    assert model.generate(**inputs, max_new_tokens=8)[0, -8:].tolist() == compiled
