"""The anchors' "split" attention on CUDA (cuDNN pieces merged by log-sum-exp, config.anchor_attention) against
the flash path and an fp32 reference, at a realistic piece of a prefill (2B heads: 16 query, 8 KV, head_dim 128).
The merge itself is checked on the CPU in tests/core/test_anchor_attention.py."""

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def piece(q_len: int, k_len: int, dtype=torch.bfloat16):
    g = torch.Generator(device="cuda").manual_seed(q_len + k_len)
    q = torch.randn(1, 16, q_len, 128, device="cuda", generator=g).to(dtype)
    # views of the first k_len slots of larger buffers, as a KV cache hands them over
    k, v = (torch.randn(1, 8, k_len + 100, 128, device="cuda", generator=g).to(dtype)[:, :, :k_len] for _ in range(2))
    return q, k, v


@cuda
@pytest.mark.parametrize("q_len,k_len", [(2048, 8192), (2048, 2048), (1500, 4000)])
def test_split_matches_flash_in_bf16(q_len, k_len):
    """Tolerance: both paths against the fp32 boolean-mask reference, within 2e-2 (bf16 output rounding, as the
    flash path's own test) and within twice the flash path's own error plus one bf16 step at 1 (2^-8): the split
    path's pieces round to bf16 before an fp32 merge, so its error may differ from flash's, not grow past it."""
    from spatial_ttt.layers.attention import masked_attention
    from spatial_ttt.ops.attention_gpu import causal_attention

    q, k, v = piece(q_len, k_len)
    q_start = k_len - q_len + 7
    split = causal_attention(q, k, v, q_start, 7, None, "split")
    flash = causal_attention(q, k, v, q_start, 7, None, "flash")
    exact = masked_attention(q.float(), k.float(), v.float(), q_start, 7, None)
    split_error, flash_error = ((out.float() - exact).abs().max().item() for out in (split, flash))
    assert split.dtype == torch.bfloat16 and split.shape == flash.shape
    assert split_error < 2e-2 and split_error <= 2 * flash_error + 2**-8, (split_error, flash_error)


@cuda
def test_split_in_fp32_runs_the_flash_settings_path():
    """cuDNN has no fp32 kernel: "split" falls back by construction to what "flash" runs (flex here), bit for bit."""
    from spatial_ttt.ops.attention_gpu import causal_attention

    q, k, v = piece(1500, 4000, torch.float32)
    split, flash = (causal_attention(q, k, v, 2500, 0, None, setting) for setting in ("split", "flash"))
    assert torch.equal(split, flash)


@cuda
def test_split_never_copies_the_cache():
    """Only the diagonal block's keys are repeated to the query heads; over the prefix the query heads are stacked
    instead: the peak above the inputs stays near a few query-sized tensors, far below one repeated copy of the
    cache (or of a block of it)."""
    from spatial_ttt.ops.attention_gpu import attention_after_cache_split

    q, k, v = piece(1024, 65536)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    attention_after_cache_split(q, k, v)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    whole_cache_repeated = 2 * 16 * 65536 * 128 * 2  # k and v, bf16: 512 MiB
    assert extra < whole_cache_repeated / 8, extra
