"""The GPU paths' formulations, checked on CPU where they can run (CI has no GPU); CUDA-only checks skip."""

import pytest
import torch

from spatial_ttt.layers.attention import causal_window_mask
from spatial_ttt.ops import FastWeights, TokenStream, fast_weight_scan, use_gpu_path
from spatial_ttt.ops import fast_weight as reference
from spatial_ttt.ops.fast_weight_gpu import _scan_graphed, fast_weight_scan_gpu, scan_flops

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_inputs(bh=2, n=50, d=16, momentum=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(bh, d, d, generator=g) / d**0.5 for _ in range(3)]
    q, k, v = (torch.nn.functional.normalize(torch.randn(bh, n, d, generator=g), dim=-1) for _ in range(3))
    lr = [torch.rand(bh, n, 1, generator=g) * 0.3 for _ in range(3)]
    mom = torch.rand(bh, n, 1, generator=g) if momentum else None
    return FastWeights.start(*w), q, TokenStream(k, v, *lr, mom)


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def bf16_sensitivity(weights, q, tokens, chunk, muon, pending=0):
    """How far the reference itself moves when only its q/k/v inputs are rounded to bf16: the yardstick for a
    bf16 path (Newton-Schulz in bf16 amplifies any rounding, see spec/official-model.md, precision notes)."""
    rb = lambda t: t.bfloat16().float()
    out, w, _ = reference.fast_weight_scan(weights, q, tokens, pending, chunk, muon)
    rounded, rw, _ = reference.fast_weight_scan(
        weights, rb(q), TokenStream(rb(tokens.k), rb(tokens.v), *tokens[2:]), pending, chunk, muon
    )
    return max([rel(rounded, out)] + [rel(a, b) for a, b in zip(rw[:3], w[:3])])


@pytest.mark.parametrize("muon", [False, True])
@pytest.mark.parametrize("momentum", [False, True])
@pytest.mark.parametrize("n,chunk", [(100, 24), (96, 24), (7, 24)])  # chunk > d: full-rank steps (Muon amplifies noise in a rank-deficient step)
def test_gpu_formulation_matches_reference_on_cpu(muon, momentum, n, chunk):
    weights, q, tokens = random_inputs(n=n, momentum=momentum)
    ref_out, ref_w, ref_left = reference.fast_weight_scan(weights, q, tokens, 0, chunk, muon)
    out, w, left = fast_weight_scan_gpu(weights, q, tokens, 0, chunk, muon, compile=False)
    assert left == ref_left and out.dtype == torch.float32 and out.shape == ref_out.shape
    assert rel(out[:, :chunk], ref_out[:, :chunk]) < 1e-2  # first chunk: bf16 products only
    tol = 1e-2 + (3 * bf16_sensitivity(weights, q, tokens, chunk, muon) if muon else 0)
    assert rel(out, ref_out) < tol
    for a, b in zip((w.w0, w.w1, w.w2), (ref_w.w0, ref_w.w1, ref_w.w2)):
        assert rel(a, b) < tol
    assert (w.momentum is None) == (ref_w.momentum is None)


def test_gpu_formulation_continues_with_pending_tokens():
    weights, q, tokens = random_inputs(n=100, momentum=True)
    # first call leaves 5 pending tokens, second call continues from them (as TTTAttention.memorise does)
    out1, w1, left1 = reference.fast_weight_scan(weights, q[:, :53], tokens.slice(0, 53), 0, 24, True)
    g_out1, g_w1, g_left1 = fast_weight_scan_gpu(weights, q[:, :53], tokens.slice(0, 53), 0, 24, True, compile=False)
    assert left1 == g_left1 == 5
    rest = tokens.slice(48)
    out2, _, left2 = reference.fast_weight_scan(w1, q[:, 53:], rest, 5, 24, True)
    g_out2, _, g_left2 = fast_weight_scan_gpu(g_w1, q[:, 53:], rest, 5, 24, True, compile=False)
    assert left2 == g_left2
    tol = 1e-2 + 2 * bf16_sensitivity(weights, q, tokens, 24, True)
    assert rel(torch.cat([g_out1, g_out2], 1), torch.cat([out1, out2], 1)) < tol


def test_dispatch_uses_reference_on_cpu():
    weights, q, tokens = random_inputs()
    assert not use_gpu_path(q)
    out, _, _ = fast_weight_scan(weights, q, tokens, 0, 8, True)
    ref, _, _ = reference.fast_weight_scan(weights, q, tokens, 0, 8, True)
    assert torch.equal(out, ref)


def test_flop_count():
    f = scan_flops(4, 2648 * 2, 512, 512, 2648, True)
    assert f["update"] == 4 * 12 * 2648 * 512 * 512
    assert f["newton_schulz"] == 4 * 15 * 6 * 512**3


@pytest.mark.parametrize(
    "q_len,k_len,q_start,k_start,window",
    [(300, 300, 0, 0, 100), (300, 300, 0, 0, None), (130, 500, 400, 30, None), (130, 400, 370, 100, 256), (257, 257, 0, 0, 1)],
)
def test_band_block_mask_matches_boolean_mask(q_len, k_len, q_start, k_start, window):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    from spatial_ttt.ops.attention_gpu import band_block_mask

    mask = band_block_mask(q_len, k_len, q_start, k_start, window, "cpu")
    dense = causal_window_mask(q_start, q_len, k_start, k_len, window, "cpu")
    # tile structure: every tile holding a True of the dense mask is listed (partially or fully)
    listed = mask.to_dense()[0, 0].bool()
    for i in range(listed.shape[0]):
        for j in range(listed.shape[1]):
            tile = dense[i * 128 : (i + 1) * 128, j * 128 : (j + 1) * 128]
            assert bool(listed[i, j]) == bool(tile.any())
    q = torch.randn(1, 4, q_len, 16)
    k, v = torch.randn(1, 2, k_len, 16), torch.randn(1, 2, k_len, 16)
    try:
        out = flex.flex_attention(q, k, v, block_mask=mask, enable_gqa=True)
    except Exception as error:  # eager flex on CPU is not available in every torch build
        pytest.skip(f"flex_attention does not run eagerly on CPU here: {error}")
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, enable_gqa=True)
    rows = dense.any(-1)  # rows with no visible key are undefined in both
    assert torch.allclose(out[:, :, rows], ref[:, :, rows], atol=1e-5)


@cuda
def test_gpu_scan_matches_reference_on_cuda():
    weights, q, tokens = random_inputs(n=300, d=64)
    to = lambda t: None if t is None else t.cuda()
    gw = FastWeights(*(to(t) for t in weights[:3]), tuple(to(t) for t in weights.norms), None)
    out, _, _ = fast_weight_scan_gpu(gw, q.cuda(), TokenStream(*(to(t) for t in tokens)), 0, 64, True)
    ref, _, _ = reference.fast_weight_scan(weights, q, tokens, 0, 64, True)
    assert rel(out.cpu(), ref) < 1e-2 + 2 * bf16_sensitivity(weights, q, tokens, 64, True)


@pytest.mark.parametrize("momentum", [False, True])
@pytest.mark.parametrize("pending,n", [(0, 100), (0, 96), (5, 100), (5, 20), (0, 3)])
def test_graphed_scan_logic_on_cpu(momentum, pending, n):
    """The CUDA-graph scan's chunk bookkeeping (static buffers, pending rows), run eagerly on CPU."""
    weights, q, tokens = random_inputs(n=n, momentum=momentum)
    q = q[:, pending:]
    out, w, left = _scan_graphed(weights, q, tokens, pending, 24, True)
    ref_out, ref_w, ref_left = fast_weight_scan_gpu(weights, q, tokens, pending, 24, True, compile=False)
    assert left == ref_left
    assert rel(out, ref_out) < 1e-5
    for a, b in zip(w[:3], ref_w[:3]):
        assert rel(a, b) < 1e-5
    assert (w.momentum is None) == (ref_w.momentum is None)


@pytest.mark.parametrize("grid", [(3, 4, 5), (1, 2, 2), (4, 1, 3)])
def test_spatial_conv_gpu_formulation_matches_module(grid):
    from spatial_ttt.layers.spatial_conv import VideoSpan, make_conv
    from spatial_ttt.ops.spatial_conv_gpu import conv_video_tokens_gpu

    t, h, w = grid
    conv = make_conv(8)
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(2, 7 + t * h * w + 5, 8)
    videos = [VideoSpan(1, torch.arange(7, 7 + t * h * w), grid), VideoSpan(0, torch.arange(3, 3 + t * h * w), grid)]
    from spatial_ttt.layers import spatial_conv

    with torch.no_grad():
        ref = spatial_conv.conv_video_tokens(x, conv, videos)  # CPU: module path
        out = conv_video_tokens_gpu(x, conv.weight, videos, compile=False)
    assert torch.allclose(out, ref, atol=1e-5)
