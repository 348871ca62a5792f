"""The attention's rope compiled on CUDA (layers/rope.py rope_qk, where the graphed kernel runs) against the eager op,
alone at the 2B shapes and through a model's generate. The CPU checks are tests/core/test_rope.py."""

import pytest
import torch

from spatial_ttt.layers.attention import Attention
from spatial_ttt.layers.rope import rope_qk
from spatial_ttt.ops import FastWeightKernel
from spatial_ttt.tiny import tiny_model

from core.helpers import video_prompt

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("length", [11038, 3])  # a 128-frame prompt; a short text run
def test_compiled_rope_is_eager_to_one_bf16_step(length):
    q = (torch.randn(1, length, 16, 128, device="cuda") * 3).bfloat16()
    k = (torch.randn(1, length, 8, 128, device="cuda") * 3).bfloat16()
    angles = torch.rand(1, length, 64, device="cuda") * 1000
    cos, sin = torch.cat([angles.cos()] * 2, -1).bfloat16(), torch.cat([angles.sin()] * 2, -1).bfloat16()
    kernel = FastWeightKernel.standalone(8, False, kernel="auto")  # graphed on CUDA, no autograd
    with torch.inference_mode():
        got = kernel.fused_for_inference(rope_qk, q)(q, k, cos, sin)
        expected = rope_qk(q, k, cos, sin)
    assert any(key[0] is rope_qk for key in kernel._compiled)
    for a, b, x in zip(got, expected, (q, k)):
        torch.testing.assert_close(a, b, atol=2**-7 * float(x.abs().max()), rtol=2**-7)


@cuda
def test_generate_gives_the_same_tokens_with_compiled_and_eager_rope():
    model = tiny_model(lact_chunk_size=8, use_muon=False).cuda()
    inputs = {k: v.cuda() for k, v in video_prompt(frames_groups=4, grid_hw=4).items()}
    compiled = model.generate(**inputs, max_new_tokens=8)[0, -8:].tolist()
    assert any(key[0] is rope_qk for key in model.model.language_model.kernel._compiled)
    for attention in (m for m in model.modules() if isinstance(m, Attention)):
        attention.kernel = None
    assert model.generate(**inputs, max_new_tokens=8)[0, -8:].tolist() == compiled
