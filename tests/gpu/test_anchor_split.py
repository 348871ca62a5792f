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
@pytest.mark.parametrize("q_len,k_len,tile,key_tile", [
    (2048, 8192, 1024, 2048),   # whole tiles of queries and keys
    (2048, 2048, 1024, 1024),   # no cache before
    (1500, 4000, 512, 1024),    # ragged keys before each tile (flash), a padded last tile
    (1200, 4000, 512, 1024),    # 176 rows left: flash
    (16340, 20000, None, None),  # a prompt's piece of 95 frame groups, through causal_attention as anchors call it
])
def test_split_matches_flash_in_bf16(q_len, k_len, tile, key_tile):
    """Tolerance: both paths against the fp32 boolean-mask reference, within 2e-2 (bf16 output rounding, as the
    flash path's own test) and within twice the flash path's own error plus one bf16 step at 1 (2^-8): the split
    path's pieces round to bf16 before an fp32 merge, so its error may differ from flash's, not grow past it."""
    from spatial_ttt.layers.attention import masked_attention
    from spatial_ttt.ops.attention_gpu import attention_after_cache_split, causal_attention

    q, k, v = piece(q_len, k_len)
    q_start = k_len - q_len + 7
    if tile is None:
        split = causal_attention(q, k, v, q_start, 7, None, "split")
    else:
        split = attention_after_cache_split(q, k, v, tile, key_tile)
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
def test_split_memory_does_not_grow_with_the_cache():
    """Only a tile's own keys are repeated to the query heads (and one key tile copied); over the keys before it
    the query heads are stacked instead: the peak above the inputs is the same after a cache 3x as long, and far
    below one repeated copy of the cache."""
    from spatial_ttt.ops.attention_gpu import attention_after_cache_split

    extra = []
    for k_len in (32768, 98304):
        q, k, v = piece(4096, k_len)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        attention_after_cache_split(q, k, v, 2048, 4096)
        torch.cuda.synchronize()
        extra.append(torch.cuda.max_memory_allocated() - before)
        del q, k, v
    whole_cache_repeated = 2 * 16 * 98304 * 128 * 2  # k and v, bf16: 768 MiB
    assert abs(extra[1] - extra[0]) <= 2**20 and extra[1] < whole_cache_repeated / 4, extra


@cuda
def test_split_under_autograd_runs_flash():
    """Training records gradients; split's merge has none: the call runs flash, bit for bit, and back-propagates."""
    from spatial_ttt.ops.attention_gpu import causal_attention

    q, k, v = piece(8192, 12000)
    q.requires_grad_()
    split, flash = (causal_attention(q, k, v, 12000 - 8192, 0, None, setting) for setting in ("split", "flash"))
    assert torch.equal(split, flash)
    split.float().square().sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
