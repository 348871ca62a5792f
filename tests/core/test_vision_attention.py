"""The vision side: a video's frames attended in one call (the same numbers as transformers' one call per frame),
and the deepstack rows embed hands the decoder."""

import pytest
import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionAttention

from spatial_ttt.layers.vision_attention import FrameBatchedVisionAttention
from spatial_ttt.tiny import tiny_config, tiny_model


def per_frame(attention, *args):
    """transformers' forward on the same module (one SDPA call per chunk of cu_seqlens)."""
    attention.__class__ = Qwen3VLVisionAttention
    try:
        return attention(*args)
    finally:
        attention.__class__ = FrameBatchedVisionAttention


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lengths", [[660] * 4, [6, 6, 6], [8, 5, 8]])
def test_frames_in_one_call_equal_one_call_per_frame(dtype, lengths, device):
    """2B vision heads (16 x 64); 352x480 frames (660 patches), tiny frames, and chunks of several sizes (an image
    beside a video: transformers' path). On CUDA the batched problem may pick another SDPA kernel: this says
    whether the numbers stay the same there too."""
    config = tiny_config(vision_config=dict(depth=1, hidden_size=1024, num_heads=16, intermediate_size=64,
                                            out_hidden_size=64)).vision_config
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    attention = FrameBatchedVisionAttention(config).to(device, dtype).eval()
    rows = sum(lengths)
    x = torch.randn(rows, 1024, dtype=dtype).to(device)
    rope = (torch.randn(rows, 64, dtype=dtype).to(device), torch.randn(rows, 64, dtype=dtype).to(device))
    cu_seqlens = torch.tensor([0, *lengths]).cumsum(0).to(device)
    with torch.no_grad():
        assert torch.equal(attention(x, cu_seqlens, rope), per_frame(attention, x, cu_seqlens, rope))


def test_the_model_vision_tower_uses_it_with_the_checkpoint_names():
    model = tiny_model()
    blocks = model.model.visual.blocks
    assert all(type(block.attn) is FrameBatchedVisionAttention for block in blocks)
    assert "model.visual.blocks.0.attn.qkv.weight" in model.state_dict()
    assert "model.visual.blocks.0.attn.proj.bias" in model.state_dict()


def test_deepstack_rows_of_images_and_videos_alone_and_together():
    """embed: a prompt with one kind of media takes its deepstack features as they are; a prompt with both
    interleaves them by token type. Each kind's rows are the same either way."""
    model = tiny_model()
    torch.manual_seed(1)
    image_pixels, video_pixels = torch.randn(16, 3 * 2 * 16 * 16), torch.randn(2 * 16, 3 * 2 * 16 * 16)
    image_grid, video_grid = torch.tensor([[1, 4, 4]]), torch.tensor([[2, 4, 4]])
    image, video = [7, 502] + [500] * 4 + [503], [8, 502] + [501] * 4 + [503] + [9, 502] + [501] * 4 + [503]

    def deepstack(ids, **media):
        ids = torch.tensor([ids])
        with torch.no_grad():
            _, visual_mask, levels = model.embed(ids, model.token_types(ids), media.get("pixel_values"),
                                                 media.get("image_grid_thw"), media.get("pixel_values_videos"),
                                                 media.get("video_grid_thw"))
        return visual_mask, levels

    _, alone_image = deepstack(image, pixel_values=image_pixels, image_grid_thw=image_grid)
    _, alone_video = deepstack(video, pixel_values_videos=video_pixels, video_grid_thw=video_grid)
    mask, both = deepstack(image + video, pixel_values=image_pixels, image_grid_thw=image_grid,
                           pixel_values_videos=video_pixels, video_grid_thw=video_grid)
    assert len(both) == len(alone_image) == 2 and int(mask.sum()) == 4 + 8
    for joint, img, vid in zip(both, alone_image, alone_video):
        assert torch.equal(joint[:4], img) and torch.equal(joint[4:], vid) and img.abs().sum() > 0


@pytest.mark.parametrize("host", [False, True])
def test_embed_refuses_placeholders_without_pixels_and_a_count_mismatch(host):
    """The checks count placeholders in host memory (the caller's types, or one read-back): video placeholders
    without pixels, and 4 video tokens against 8 features, are refused by name and count either way."""
    model = tiny_model()
    pixels, grid = torch.randn(2 * 16, 3 * 2 * 16 * 16), torch.tensor([[2, 4, 4]])
    ids = torch.tensor([[8, 502] + [501] * 4 + [503]])
    types = model.token_types(ids)
    extra = (types.clone(),) if host else ()
    with torch.no_grad(), pytest.raises(ValueError, match="video placeholder tokens but no video pixels"):
        model.embed(ids, types, None, None, None, None, *extra)
    with torch.no_grad(), pytest.raises(ValueError, match="8 features, 4 tokens"):
        model.embed(ids, types, None, None, pixels, grid, *extra)


def test_the_tower_takes_a_grids_inputs_as_computed_once_and_gives_the_same_numbers(monkeypatch):
    """encode_visual hands the tower what transformers derives from grid_thw (positions, interpolation, cu_seqlens),
    computed once per grid, and the blocks their frames: the features equal the tower's own call bit for bit, and
    no block reads its frames off cu_seqlens (on a GPU, a synchronisation per block)."""
    import spatial_ttt.layers.vision_attention as vision_attention

    model = tiny_model().eval()
    torch.manual_seed(2)
    pixels, grid = torch.randn(3 * 16, 3 * 2 * 16 * 16), torch.tensor([[3, 4, 4]])
    with torch.no_grad():
        own = model.model.visual(pixels, grid_thw=grid)

        def no_reading(cu_seqlens):
            raise AssertionError("a block read its frames off cu_seqlens")

        monkeypatch.setattr(vision_attention, "equal_frames", no_reading)
        for _ in range(2):  # the second call takes the kept inputs
            features, deepstack = model.encode_visual(pixels, grid)
            assert torch.equal(features, own.pooler_output)
            assert all(torch.equal(a, b) for a, b in zip(deepstack, own.deepstack_features, strict=True))
    assert list(model.model.grids) == [(3, 4, 4, torch.device("cpu"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_patch_gemm_is_the_conv3d_and_a_patch_result_does_not_depend_on_its_company(dtype, device):
    """patch_gemm against transformers' Conv3d on the 2B shape's patches (3 x 2 x 16 x 16 pixels -> 1024): to the
    products' rounding; and a patch's row is the same bits whether it comes alone, first of many or at another
    position of a block (what keeps a stream's pieces and a one-shot prompt on the same features)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

    from spatial_ttt.layers.vision_attention import patch_gemm

    config = tiny_config(vision_config=dict(hidden_size=1024)).vision_config
    torch.manual_seed(0)
    embed = Qwen3VLVisionPatchEmbed(config).to(device, dtype)
    patches = torch.randn(300, 3 * 2 * 16 * 16).to(device, dtype)
    weight, bias = embed.proj.weight.flatten(1), embed.proj.bias
    with torch.no_grad():
        got = patch_gemm(patches, weight, bias, rows=128)  # three blocks, the last one padded
        exact = patch_gemm(patches.double(), weight.double(), bias.double(), rows=128)
        conv_error = (embed(patches).double() - exact).abs().max()
        assert (got.double() - exact).abs().max() <= 2 * conv_error + 1e-6  # as close as the Conv3d's own rounding
        assert torch.equal(patch_gemm(patches[5:6], weight, bias, rows=128), got[5:6])
        assert torch.equal(patch_gemm(patches[37:], weight, bias, rows=128), got[37:])


def test_the_patch_embedding_is_transformers_conv3d_off_the_gpu():
    """On the CPU (and under autograd) the model's patch embedding runs transformers' Conv3d itself: the same bits."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

    from spatial_ttt.layers.vision_attention import GemmPatchEmbed

    model = tiny_model()
    embed = model.model.visual.patch_embed
    assert type(embed) is GemmPatchEmbed and embed.kernel is model.model.language_model.kernel
    patches = torch.randn(8, 3 * 2 * 16 * 16)
    with torch.no_grad():
        got = embed(patches)
        embed.__class__ = Qwen3VLVisionPatchEmbed
        try:
            assert torch.equal(got, embed(patches))
        finally:
            embed.__class__ = GemmPatchEmbed


def two_b_block(device, dtype):
    """One vision block of the 2B shape's width (1024, 16 heads, MLP 4096), random weights, and its inputs for 3
    frames of 6 patches."""
    from spatial_ttt.tiny import tiny_model

    model = tiny_model(seed=0, vision_config=dict(depth=1, hidden_size=1024, num_heads=16, intermediate_size=4096,
                                                  out_hidden_size=64))
    block = model.model.visual.blocks[0].to(device, dtype).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(18, 1024, generator=g).to(device, dtype)
    cos, sin = (torch.randn(18, 64, generator=g).to(device, dtype) for _ in range(2))
    return block, x, cos, sin


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_gelu_in_the_gemm_epilogue_is_the_block_to_rounding(device, dtype):
    """frame_block_gelu_epilogue (the MLP's first linear, bias and tanh GELU as one GEMM: cuBLASLt's epilogue on
    CUDA) against frame_block (transformers' MLP) on the 2B width: as close to the block computed in fp64, to twice
    its error (the epilogue skips one bf16 rounding of the linear's output). On the CPU it is that MLP."""
    from spatial_ttt.layers.vision_attention import frame_block, frame_block_gelu_epilogue, gelu_epilogue_applies

    block, x, cos, sin = two_b_block(device, dtype)
    assert gelu_epilogue_applies(block)
    with torch.no_grad():
        ours = frame_block_gelu_epilogue(block, x, cos, sin, 3, 6).double()
        theirs = frame_block(block, x, cos, sin, 3, 6).double()
        block.double()
        exact = frame_block(block, x.double(), cos.double(), sin.double(), 3, 6)
    error, their_error = (ours - exact).abs().max(), (theirs - exact).abs().max()
    assert error <= 2 * their_error + 1e-5, (error, their_error)


def test_the_blocks_take_the_gelu_epilogue_where_inference_kernels_run(monkeypatch):
    """Where the model's kernel runs its inference kernels (CUDA, no autograd; here pretended on the CPU, its
    compilation skipped) each block runs frame_block_gelu_epilogue, elsewhere frame_block; on the CPU the two give
    the same features (linear_gelu_tanh is the linear, then the GELU, there)."""
    import spatial_ttt.layers.vision_attention as vision

    from spatial_ttt.tiny import tiny_model

    model = tiny_model(seed=0, ttt_kernel="compiled")  # (the reference kernel runs every stage as it is)
    kernel = model.model.language_model.kernel
    ran = []
    spy = lambda fn: (lambda *args: ran.append(fn.__name__) or fn(*args))  # noqa: E731
    monkeypatch.setattr(type(kernel), "compiled", lambda self, fn, variant=None, dynamic=None: spy(fn))
    pixels, grid = torch.randn(2 * 4 * 4, 3 * 2 * 16 * 16), torch.tensor([[2, 4, 4]])
    with torch.no_grad():
        expected = model.model.visual(pixels, grid_thw=grid).pooler_output
        assert ran == ["frame_block"] * len(model.model.visual.blocks)
        ran.clear()
        monkeypatch.setattr(type(kernel), "runs_inference_kernels", lambda self, t: True)
        got = model.model.visual(pixels, grid_thw=grid).pooler_output
    assert ran == ["frame_block_gelu_epilogue"] * len(model.model.visual.blocks)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert vision.gelu_epilogue_applies(model.model.visual.blocks[0])
