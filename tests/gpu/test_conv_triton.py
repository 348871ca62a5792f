"""The Triton stencil of the spatial conv (spatial_ttt.ops.conv_triton) against the reference depthwise_conv3, and
the model on CUDA with it (one-shot prefill and the streaming engine's pieces) against the reference path.

The stencil checks also run on the CPU under Triton's interpreter, on the small shapes (tests/core/
test_conv_triton.py runs ``check_stencil`` in a process with TRITON_INTERPRET=1)."""

import functools

import pytest
import torch

from spatial_ttt.layers import ttt
from spatial_ttt.layers.spatial_conv import VideoSpan, conv_token_groups, conv_video_tokens, depthwise_conv3
from spatial_ttt.streaming import prefill_in_pieces
from spatial_ttt.tiny import tiny_model

from core.helpers import video_prompt

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (leading dims, T, H, W, C), T output frames (the stencil reads T + 2)
SMALL = [
    ((), 1, 11, 15, 64),
    ((2, 3), 2, 5, 7, 96),  # two leading dims, channels not a multiple of the channel block
    ((1,), 3, 3, 4, 160),  # two channel blocks, the second partly masked
    ((2,), 2, 1, 1, 8),  # a 1x1 frame: every spatial tap clamps onto the token itself
    ((), 0, 3, 4, 8),  # no output frame
    ((), 10, 3, 4, 16),  # two runs of output frames in time (8 per program), the second partly masked
]
SHAPES = SMALL + [
    ((1,), 8, 22, 30, 64),
    ((2,), 4, 11, 15, 2048),  # the 2B model's width, 352x480 frames
    ((1,), 5, 22, 30, 1024),
    ((3,), 1, 11, 15, 2048),  # one frame group between its neighbours (streaming)
    ((1,), 19, 11, 15, 512),
]


def frames_like(lead, t, h, w, c, dtype, device, layout="contiguous", seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(c, 1, 3, 3, 3, generator=g)
    if layout == "channel slice":  # every other channel of a wider tensor: strided rows
        frames = torch.randn(*lead, t + 2, h, w, 2 * c, generator=g)[..., ::2]
    elif layout == "permuted":  # H and W swapped in memory
        frames = torch.randn(*lead, t + 2, w, h, c, generator=g).transpose(-3, -2)
    else:
        frames = torch.randn(*lead, t + 2, h, w, c, generator=g)
    return frames.to(device=device, dtype=dtype), weight.to(device=device, dtype=dtype)


def assert_within_rounding(got, exact, dtype, truncating):
    """The Triton stencil's output against the reference's fp32 sum ``exact``. fp32: to fp32 rounding (a different
    order of fused multiply-adds). bf16: within half a bf16 ulp, i.e. only the output's rounding differs (a whole
    ulp where ``truncating``: Triton's interpreter truncates to bf16 instead of rounding)."""
    if dtype == torch.float32:
        torch.testing.assert_close(got, exact, rtol=1e-5, atol=2e-5)
    else:
        ulp = 2.0**-7 if truncating else 2.0**-8  # of |value|: bf16 keeps 8 significant bits
        assert bool(((got.float() - exact).abs() <= exact.abs() * ulp + 1e-4).all())  # + fp32 noise near 0


def check_stencil(shape, dtype, device, layout="contiguous", truncating=False):
    """The Triton stencil against depthwise_conv3 (:func:`assert_within_rounding`); in bf16 also against the
    reference's own bf16 output."""
    from spatial_ttt.ops.conv_triton import depthwise_conv3_triton

    frames, weight = frames_like(*shape, dtype, device, layout)
    out = depthwise_conv3_triton(frames, weight)
    assert out.shape == (*shape[0], *shape[1:]) and out.dtype == dtype
    assert_within_rounding(out, depthwise_conv3(frames.float(), weight.float()), dtype, truncating)
    if dtype == torch.bfloat16 and not truncating and out.numel():  # (the mean of no elements is nan)
        reference = depthwise_conv3(frames, weight)
        assert (out != reference).float().mean().item() < 1e-2  # a rounding boundary within fp32 noise
    return out


# (gaps: text rows before each group, grid_hw, channels, previous given, following given)
GROUPS = [
    ([3, 7, 7, 1], (3, 4), 64, True, True),
    ([0, 2], (2, 5), 96, False, True),  # the video's first group, channels not a multiple of the block
    ([5, 0, 4, 9, 2, 6, 1, 3, 8, 2], (3, 3), 32, True, False),  # ten groups (two runs of 8 in time), the last
    ([1], (1, 1), 8, False, False),  # one 1x1 group that is the whole video
]


def check_token_groups(case, dtype, device, truncating=False):
    """conv_token_groups_triton against conv_token_groups (the reference stencil): groups at irregular rows
    among text rows, tokens a strided view (every third row of channels, as a slice of a fused projection), the
    neighbours given or not. The text rows come back untouched; the groups' rows as check_stencil's bounds."""
    from spatial_ttt.ops.conv_triton import conv_token_groups_triton

    gaps, grid, c, has_previous, has_following = case
    size = grid[0] * grid[1]
    starts = [sum(gaps[: i + 1]) + i * size for i in range(len(gaps))]
    g = torch.Generator().manual_seed(len(gaps))
    wide = torch.randn(2, starts[-1] + size + 4, 3 * c, generator=g)
    tokens = wide[..., c : 2 * c].to(device, dtype)
    previous = torch.randn(2, size, c, generator=g).to(device, dtype) if has_previous else None
    following = torch.randn(2, size, 3 * c, generator=g)[..., :c].to(device, dtype) if has_following else None
    weight = torch.randn(c, 1, 3, 3, 3, generator=g).to(device, dtype)
    first_rows = torch.tensor(starts, device=device)
    out = conv_token_groups_triton(tokens, first_rows, previous, following, grid, weight)
    previous32, following32 = (None if t is None else t.float() for t in (previous, following))
    exact = conv_token_groups(tokens.float(), first_rows, previous32, following32, grid, weight.float())
    rows = (first_rows[:, None] + torch.arange(size, device=device)).flatten()
    text = torch.ones(tokens.shape[1], dtype=torch.bool, device=device)
    text[rows] = False
    assert out.shape == tokens.shape and out.dtype == dtype and torch.equal(out[:, text], tokens[:, text])
    assert_within_rounding(out[:, rows], exact[:, rows], dtype, truncating)
    return out


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", GROUPS)
def test_triton_token_groups_equal_the_reference(case, dtype):
    check_token_groups(case, dtype, "cuda")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_stencil_equals_the_reference(shape, dtype):
    check_stencil(shape, dtype, "cuda")


@cuda
@pytest.mark.parametrize("layout", ["channel slice", "permuted"])
def test_triton_stencil_reads_non_contiguous_frames(layout):
    check_stencil(((2,), 3, 11, 15, 256), torch.bfloat16, "cuda", layout)


# ----------------------------------------------------------------------------------------------------------------
# the model


@pytest.fixture
def triton_calls(monkeypatch):
    """Counts the TTT layers' calls of the Triton stencil (a one-shot prompt's volume, a piece's frame groups)."""
    calls = []

    def counted(real):
        def call(*args, **kwargs):
            calls.append(args[0].shape)
            return real(*args, **kwargs)
        return call

    for name in ("depthwise_conv3_triton", "conv_token_groups_triton"):
        monkeypatch.setattr(ttt, name, counted(getattr(ttt, name)))
    return calls


def reference_stencil(monkeypatch):
    """The same path with the reference stencil where the Triton kernel ran."""
    monkeypatch.setattr(ttt, "depthwise_conv3_triton", depthwise_conv3)
    monkeypatch.setattr(ttt, "conv_token_groups_triton", functools.partial(conv_token_groups, stencil=depthwise_conv3))


def on_cuda(inputs):
    return {k: v.cuda() for k, v in inputs.items()}


def logits(model, kernel, inputs, pieces=None):
    model.config.ttt_kernel = kernel
    with torch.no_grad():
        if pieces is None:
            return model(**inputs).logits[:, -1].float()
        state = model.new_state(inputs["input_ids"].shape[0])
        return prefill_in_pieces(model, state, inputs["input_ids"], inputs["pixel_values_videos"],
                                 inputs["video_grid_thw"], pieces).float()


@pytest.fixture(scope="module")
def model():
    """fp32 tiny model on CUDA, shared so that its graphed fast-weight kernel compiles once."""
    return tiny_model(use_muon=False, lact_chunk_size=16).cuda()


@cuda
@pytest.mark.parametrize("pieces", [None, 40, 70])
def test_prefill_with_the_triton_stencil_matches_the_reference_path(model, triton_calls, monkeypatch, pieces):
    """4 frame groups of 5x5 tokens (10x10 patches, merged 2x2), a batch of 2. ``pieces``: run as the streaming
    engine's pieces (prefill_in_pieces: 1 or 2 frame groups per piece), else one forward. Against the reference
    path (every kernel the reference), and against the same path with only the stencil swapped back."""
    inputs = on_cuda(video_prompt(frames_groups=4, grid_hw=10, batch=2))
    expected = logits(model, "reference", inputs, pieces)
    assert not triton_calls
    got = logits(model, "auto", inputs, pieces)
    ttt_layers = sum(layer.is_ttt for layer in model.model.language_model.layers)
    assert len(triton_calls) >= 3 * ttt_layers
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    reference_stencil(monkeypatch)
    torch.testing.assert_close(got, logits(model, "auto", inputs, pieces), rtol=1e-4, atol=1e-4)


@cuda
def test_bf16_prefill_differs_from_the_reference_stencil_by_rounding_only(triton_calls, monkeypatch):
    model = tiny_model(use_muon=False, lact_chunk_size=16).cuda().to(torch.bfloat16)
    inputs = on_cuda(video_prompt(frames_groups=4, grid_hw=10))
    got = logits(model, "graphed", inputs)
    assert triton_calls
    reference_stencil(monkeypatch)
    expected = logits(model, "graphed", inputs)
    assert float((got - expected).norm() / expected.norm()) < 3e-2


@cuda
def test_with_autograd_on_cuda_the_conv_stays_differentiable(model, triton_calls):
    """Training: the compiled reference stencil, whose gradient reaches the conv weight."""
    layer = model.model.language_model.layers[0].self_attn
    model.config.ttt_kernel = "auto"
    x = torch.randn(1, 2 * 4 * 4 + 3, layer.conv_k.weight.shape[0], device="cuda", requires_grad=True)
    video = VideoSpan(0, torch.arange(3, 3 + 2 * 4 * 4, device="cuda"), (2, 4, 4))
    conv_video_tokens(x, layer.conv_k, [video], layer.conv_stencil(x)).square().sum().backward()
    assert not triton_calls
    assert layer.conv_k.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    layer.conv_k.weight.grad = None


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_triton_stencil_runs_on_a_gpu_other_than_the_current_one():
    check_stencil(((1,), 3, 11, 15, 256), torch.bfloat16, "cuda:1")
