"""GPU paths: the fast-weight kernels on CUDA against the reference, the inference-mode/no_grad graph bug, and
the flex-attention block mask (checked on CPU where it can run; CI has no GPU, CUDA-only checks skip)."""

import pytest
import torch

from spatial_ttt.layers.attention import causal_window_mask
from spatial_ttt.ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream
from spatial_ttt.ops.fast_weight import scan_flops

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_inputs(bh=2, n=50, d=16, momentum=True, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(bh, d, d, generator=g) / d**0.5 for _ in range(3)]
    q, k, v = (torch.nn.functional.normalize(torch.randn(bh, n, d, generator=g), dim=-1) for _ in range(3))
    lr = [torch.rand(bh, n, 1, generator=g) * 0.3 for _ in range(3)]
    mom = torch.rand(bh, n, 1, generator=g) if momentum else None
    to = lambda t: None if t is None else t.to(device)
    return FastWeights.start(*map(to, w)), to(q), TokenStream(*map(to, (k, v, *lr, mom)))


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def prefill(kind, weights, q, tokens, chunk, muon, precision="fp32", cut=0):
    """Outputs and memory of a prefill in two calls (``cut`` tokens first), with kernel ``kind``."""
    kernel = FastWeightKernel.standalone(chunk, muon, precision, kind)
    memory = FastWeightMemory(weights)
    outs = [memory.advance(q[:, :cut], tokens.slice(0, cut), kernel)] if cut else []
    outs.append(memory.advance(q[:, cut:], tokens.slice(cut), kernel))
    return torch.cat(outs, 1), memory


def test_flop_count():
    f = scan_flops(4, 2648 * 2, 512, 512, 2648, True)
    assert f["update"] == 4 * 12 * 2648 * 512 * 512
    assert f["newton_schulz"] == 4 * 15 * 6 * 512**3


@cuda
@pytest.mark.parametrize("kind", ["compiled", "graphed"])
@pytest.mark.parametrize("muon", [False, True])
def test_cuda_kernels_match_the_reference_in_fp32(kind, muon):
    """fp32 precision: every kernel computes the reference's products in fp32 (no TF32), so they agree closely.
    With Muon the compiled Newton-Schulz skips some intermediate bf16 roundings, which the iteration amplifies
    (measured 0.11 relative L2 after 4 updates): there only the chunk before any update must agree closely."""
    weights, q, tokens = random_inputs(n=300, d=64, device="cuda")
    ref_out, ref = prefill("reference", weights, q, tokens, 64, muon, cut=37)
    out, mem = prefill(kind, weights, q, tokens, 64, muon, cut=37)
    assert mem.pending == ref.pending
    assert rel(out[:, :64], ref_out[:, :64]) < 1e-5
    assert rel(out, ref_out) < (1e-5 if not muon else 0.5)
    assert rel(mem.weights.w1, ref.weights.w1) < (1e-5 if not muon else 0.5)


@cuda
@pytest.mark.parametrize("kind", ["reference", "graphed"])
def test_cuda_bf16_precision_is_close_but_not_exact(kind):
    weights, q, tokens = random_inputs(n=300, d=64, device="cuda")
    ref_out, _ = prefill("reference", weights, q, tokens, 64, False)
    out, _ = prefill(kind, weights, q, tokens, 64, False, precision="bf16")
    assert 1e-5 < rel(out, ref_out) < 2e-2


@cuda
def test_graph_buffers_made_under_inference_mode_serve_no_grad_calls_on_cuda():
    """Was: 'Inplace update to inference tensor outside InferenceMode' on the no_grad call (what generate uses)."""
    weights, q, tokens = random_inputs(n=100, d=64, device="cuda")
    kernel = FastWeightKernel.standalone(24, False, kernel="graphed")
    with torch.inference_mode():
        first = FastWeightMemory(weights).advance(q, tokens, kernel)
    with torch.no_grad():
        second = FastWeightMemory(weights).advance(q, tokens, kernel)
    assert torch.equal(first, second)


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
@pytest.mark.parametrize("q_len,k_len,dtype", [(1500, 4000, torch.bfloat16), (1500, 4000, torch.float32), (2000, 2000, torch.bfloat16)])
def test_queries_after_a_full_cache_match_the_boolean_mask(q_len, k_len, dtype, monkeypatch):
    """The piecewise prefill's anchor attention (keys end with the queries) against the masked reference."""
    from torch import Tensor

    from spatial_ttt.layers.attention import masked_attention
    from spatial_ttt.ops.attention_gpu import causal_attention

    orig_repeat = Tensor.repeat_interleave
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 4, q_len, 64, device="cuda", generator=g).to(dtype)
    k, v = (torch.randn(1, 2, k_len, 64, device="cuda", generator=g).to(dtype) for _ in range(2))
    q_start = k_len - q_len + 7
    out = causal_attention(q, k, v, q_start, 7, None)
    ref = masked_attention(q.float(), k.float(), v.float(), q_start, 7, None)
    torch.testing.assert_close(out.float(), ref, atol=2e-2 if dtype == torch.bfloat16 else 1e-4, rtol=0)
    if dtype == torch.bfloat16:  # the flash kernel takes the KV heads as they are: no copy of the cache per call
        from torch.backends.cuda import SDPAParams, can_use_flash_attention

        # the probe causal_lower_right's dispatch makes (is_causal False); with True flash refuses Lq != Lk, and the
        # library's own probe, made that way until session 15, repeated the cache for every piece after it
        assert can_use_flash_attention(SDPAParams(q, k, v, None, 0.0, False, True))
        assert q_len == k_len or not can_use_flash_attention(SDPAParams(q, k, v, None, 0.0, True, True))
        repeats = []
        monkeypatch.setattr(Tensor, "repeat_interleave", lambda *a, **kw: repeats.append(a) or orig_repeat(*a, **kw))
        causal_attention(q, k, v, q_start, 7, None)
        assert repeats == []


@cuda
@pytest.mark.parametrize("q_len,k_len", [(1500, 4000), (2000, 2000), (300, 9000)])
def test_queries_after_a_cache_read_grouped_kv_heads_exactly_as_repeated_ones(q_len, k_len):
    """The flash kernel reading KV head h // group itself computes what SDPA's lower-right path computed over the
    cache repeated to the query heads (the repeat cost 0.7 GB at the peak of a 1024-frame prefill), bit for bit."""
    from torch.nn.attention.bias import causal_lower_right

    from spatial_ttt.ops.attention_gpu import attention_after_cache

    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 16, q_len, 128, device="cuda", generator=g).bfloat16()
    # views of the first k_len slots of larger buffers, as a KV cache hands them over
    k, v = (torch.randn(1, 8, k_len + 100, 128, device="cuda", generator=g).bfloat16()[:, :, :k_len] for _ in range(2))
    repeated = [t.repeat_interleave(2, dim=1) for t in (k, v)]
    expected = torch.nn.functional.scaled_dot_product_attention(q, *repeated, attn_mask=causal_lower_right(q_len, k_len))
    assert torch.equal(attention_after_cache(q, k, v), expected)


def test_band_block_mask_is_built_once_per_geometry():
    """A stream asks for the same band every piece (only the absolute starts move): it is reused, not rebuilt."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    from spatial_ttt.ops.attention_gpu import band_block_mask

    first = band_block_mask(300, 556, 1000, 744, 256, "cpu")
    assert band_block_mask(300, 556, 5000, 4744, 256, "cpu") is first
    assert band_block_mask(300, 556, 5000, 4700, 256, "cpu") is not first


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_masked_attention_runs_no_cudnn_kernel_and_matches_the_math_kernel(dtype):
    """A small masked call (a question's window attention) on CUDA: SDPA left to choose took cuDNN, whose first masked
    call in a process took 1.3 s on an H200 (session 18); the library allows the memory-efficient and math kernels
    only. The same output as SDPA's math kernel, grouped heads included."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from spatial_ttt.layers.attention import causal_window_mask, masked_attention

    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 16, 20, 128, device="cuda", generator=g).to(dtype)
    k, v = (torch.randn(1, 8, 3000, 128, device="cuda", generator=g).to(dtype) for _ in range(2))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        out = masked_attention(q, k, v, 2980, 0, 2048)
        torch.cuda.synchronize()
    names = [e.name.lower() for e in prof.events()]
    assert names and not [n for n in names if "cudnn" in n]
    mask = causal_window_mask(2980, 20, 0, 3000, 2048, "cuda")
    with sdpa_kernel([SDPBackend.MATH]):
        ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                                               enable_gqa=True)
    torch.testing.assert_close(out.float(), ref, atol=2e-2 if dtype == torch.bfloat16 else 1e-4, rtol=0)
