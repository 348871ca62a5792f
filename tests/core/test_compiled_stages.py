"""The model's elementwise stages outside the fast-weight operator (vision blocks, decoder norms and MLP, q/k norms
and rope) run through the model's kernel: compiled unless the reference kernel runs, with the same numbers; and
the vision tower's patch embedding is the conv's product."""

import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

from spatial_ttt.layers.attention import project_heads, rope_heads
from spatial_ttt.layers.vision_attention import LinearPatchEmbed, frame_block
from spatial_ttt.models.modeling import call, norm_mlp
from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def test_patch_embedding_is_the_conv_as_one_product():
    config = tiny_model().config.vision_config
    torch.manual_seed(0)
    embed = Qwen3VLVisionPatchEmbed(config)
    pixels = torch.randn(40, 3 * 2 * 16 * 16)
    with torch.no_grad():
        conv = embed(pixels)
        embed.__class__ = LinearPatchEmbed
        linear = embed(pixels)
    assert linear.shape == conv.shape == (40, config.hidden_size)
    torch.testing.assert_close(linear, conv, atol=2e-5, rtol=1e-5)  # the same sums, in another order


def test_compiled_stages_give_the_reference_numbers_and_share_graphs():
    """ttt_kernel="compiled" on the CPU (inductor's C++ backend) against "reference", on a video prompt. The fused
    stages only reorder fp32 arithmetic, so the logits agree to rounding; the tiny vision tower's blocks (all of
    one shape) and the decoder layers' modules compile once each, not once per block or layer. Muon off: its bf16
    Newton-Schulz makes any two implementations differ at O(1e-2)."""
    model = tiny_model(seed=0, lact_chunk_size=8, use_muon=False).eval()
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    with torch.no_grad():
        expected = model(**inputs).logits
        model.config.ttt_kernel = "compiled"
        got = model(**inputs).logits
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    assert (got - expected).abs().max() > 0  # the compiled functions really ran (fused arithmetic rounds differently)
    kernel = model.model.language_model.kernel
    stages = {fn for fn, _ in kernel._compiled}
    assert {frame_block, call, norm_mlp, project_heads, rope_heads} <= stages
    assert len(model.model.visual.blocks) == 2 and len(model.model.language_model.layers) == 8
    for fn, most in ((frame_block, 1), (norm_mlp, 1), (call, 1), (project_heads, 1), (rope_heads, 1)):
        compiled = kernel._compiled[fn, None]._torchdynamo_orig_callable
        assert len(_debug_get_cache_entry_list(compiled.__code__)) <= most, fn
