"""The attention's rope: Qwen3-VL's op for op when eager; one compiled function for q and k where the model's kernel
runs "graphed" without autograd (inductor's C++ backend on the CPU here, Triton on a GPU)."""

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

from spatial_ttt.layers.attention import Attention
from spatial_ttt.layers.rope import rope_qk
from spatial_ttt.ops import FastWeightKernel
from spatial_ttt.tiny import tiny_model


def inputs(dtype: torch.dtype, seq: int = 13) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    q = (torch.randn(2, seq, 4, 16, generator=g) * 3).to(dtype)  # [B, S, H, hd]
    k = (torch.randn(2, seq, 2, 16, generator=g) * 3).to(dtype)
    angles = torch.randn(2, seq, 8, generator=g) * 4
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)
    return q, k, cos, sin


def test_eager_rope_is_qwen3vl_bit_for_bit():
    for dtype in (torch.float32, torch.bfloat16):
        q, k, cos, sin = inputs(dtype)
        expected = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        got = rope_qk(q, k, cos, sin)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_graphed_kernel_compiles_the_rope_only_without_autograd():
    config = tiny_model().config.text_config
    attention = Attention(config)
    attention.kernel = kernel = FastWeightKernel.standalone(8, False, kernel="graphed")
    q, k, cos, sin = inputs(torch.bfloat16)
    expected = rope_qk(q, k, cos, sin)
    with torch.no_grad():
        fused = kernel.fused_for_inference(rope_qk, q)
        got = fused(q, k, cos, sin)
    assert any(key[0] is rope_qk for key in kernel._compiled) and got[0].shape == expected[0].shape == (2, 4, 13, 16)
    # one rounding instead of three (x*cos, rotate_half(x)*sin, their sum): within a bf16 step of the larger term,
    # and no further from the exact result (fp32 on the same bf16 inputs) than the eager op
    exact = rope_qk(q.float(), k.float(), cos.float(), sin.float())
    for a, b, x, truth in zip(got, expected, (q, k), exact):
        torch.testing.assert_close(a, b, atol=2**-7 * float(x.abs().max()), rtol=2**-7)
        assert (a.float() - truth).abs().max() <= (b.float() - truth).abs().max()
    kernel._compiled.clear()
    q.requires_grad_(True)  # autograd records: the eager function runs
    assert kernel.fused_for_inference(rope_qk, q) is rope_qk


def test_every_attention_holds_the_models_kernel():
    model = tiny_model()
    text = model.model.language_model
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert len(attentions) == len(text.layers)  # a TTT layer's window attention, or an anchor
    assert all(a.kernel is text.kernel for a in attentions)
