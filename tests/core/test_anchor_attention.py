"""The anchors' "split" attention (config.anchor_attention): tiles of queries, each over its causal square and
unmasked tiles of the keys before it, merged by log-sum-exp, checked on the CPU (the CPU's flash kernel gives each
piece's lse as cuDNN does on CUDA) against one SDPA call with the bottom-right causal mask; and the setting,
validated and threaded to the kernel."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from spatial_ttt import CheckpointError, load_model, save_model
from spatial_ttt.layers import attention
from spatial_ttt.ops import attention_gpu
from spatial_ttt.ops.attention_gpu import attention_after_cache_split, attention_with_lse, causal_attention
from spatial_ttt.streaming import model_fingerprint
from spatial_ttt.tiny import tiny_config, tiny_model

from .helpers import video_prompt


def after_cache(heads: int, kv_heads: int, q_len: int, k_len: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(q_len * 1000 + k_len)
    q = torch.randn(2, heads, q_len, 32, generator=g)
    k, v = (torch.randn(2, kv_heads, k_len, 32, generator=g) for _ in range(2))
    return q.to(dtype), k.to(dtype), v.to(dtype)


def lower_right(q, k, v):
    mask = causal_lower_right(q.shape[2], k.shape[2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4)])
@pytest.mark.parametrize("q_len,k_len,tile,key_tile", [
    (48, 48, 16, 16),    # no prefix: the first tile its square alone, the next ones whole key tiles before them
    (44, 44, 16, 16),    # a last tile of 12 rows, padded to 16
    (40, 40, 16, 16),    # 8 rows left: too few to pad (flash)
    (40, 50, 16, 16),    # a prefix shorter than a key tile: ragged keys before every tile (flash)
    (40, 104, 16, 24),   # key tiles longer than query tiles
    (33, 130, 16, 16),   # ragged keys and rows
    (20, 300, 7, 10),    # many tiles, ragged, padded
    (64, 96, 32, 32),    # a prefix of exactly one key tile
    (33, 130, 64, 64),   # fewer rows than 3/4 of a tile: flash alone
])
def test_split_equals_one_lower_right_call(heads, kv_heads, q_len, k_len, tile, key_tile):
    q, k, v = after_cache(heads, kv_heads, q_len, k_len)
    out = attention_after_cache_split(q, k, v, tile, key_tile)
    expected = lower_right(q, k, v)
    assert out.dtype == q.dtype and out.shape == expected.shape
    # fp32 rounding of a softmax over <= 300 keys of O(1) values (dropping one 7-key block of 300 moves it by 0.06)
    torch.testing.assert_close(out, expected, atol=2e-6, rtol=0)


def test_split_returns_the_queries_dtype_merged_in_fp32():
    """bf16 pieces, fp32 merge: within bf16 rounding of the fp32 answer, and as close as one bf16 call."""
    q, k, v = after_cache(4, 2, 48, 200, torch.bfloat16)
    out = attention_after_cache_split(q, k, v, 32, 32)
    exact = lower_right(q.float(), k.float(), v.float())
    one_call = lower_right(q, k, v)
    assert out.dtype == torch.bfloat16
    error, one_call_error = (out.float() - exact).abs().max(), (one_call.float() - exact).abs().max()
    assert error <= 1.5 * one_call_error and error < 2e-2, (error, one_call_error)


def test_cudnn_is_handed_two_shapes_whatever_the_cache(monkeypatch):
    """cuDNN builds a plan per new shape and strides (~50 ms on the host; 0.5-0.85 s at a new query length): pieces
    of every length (padded tiles), after caches of every length held in buffers of every capacity, hand it
    exactly two problems (a tile's square, a stacked tile over a key tile); what varies goes to flash."""
    calls = []

    def recording(q, k, v, causal, kernel="cudnn"):
        calls.append((kernel, causal, q.shape, q.stride(), k.shape, k.stride()))
        return attention_with_lse(q, k, v, causal, kernel)

    monkeypatch.setattr(attention_gpu, "attention_with_lse", recording)
    pieces = [(32, 32, 40), (32, 64, 70), (44, 77, 77), (16, 93, 128), (48, 200, 256), (13, 150, 160), (10, 99, 99)]
    for q_len, k_len, capacity in pieces:
        q, k, v = after_cache(4, 2, q_len, capacity)
        out = attention_gpu.attention_after_cache_split(q, k[:, :, :k_len], v[:, :, :k_len], 16, 24)
        torch.testing.assert_close(out, lower_right(q, k[:, :, :k_len], v[:, :, :k_len]), atol=2e-6, rtol=0)
    cudnn = {call[1:] for call in calls if call[0] == "cudnn"}
    assert cudnn == {(True, (2, 4, 16, 32), (2048, 512, 32, 1), (2, 4, 16, 32), (2048, 512, 32, 1)),
                     (False, (2, 2, 32, 32), (2048, 1024, 32, 1), (2, 2, 24, 32), (1536, 768, 32, 1))}
    assert any(call[0] == "flash" for call in calls)  # the ragged keys before the tiles


def test_split_refuses_autograd():
    """Its merge weights come from log-sum-exps that SDPA's kernels return without a gradient: refused, not a wrong
    gradient (on CUDA, causal_attention sends a recorded call to flash instead)."""
    q, k, v = after_cache(4, 2, 32, 64)
    with pytest.raises(ValueError, match="anchor_attention='split' is for inference"):
        attention_after_cache_split(q.requires_grad_(), k, v, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(attention_after_cache_split(q, k, v, 16, 16), lower_right(q, k, v), atol=2e-6, rtol=0)


def test_each_piece_gives_its_log_sum_exp():
    q, k, v = after_cache(4, 4, 24, 24)
    scores = q @ k.transpose(-1, -2) / 32**0.5
    for causal in (False, True):
        out, lse = attention_with_lse(q, k, v, causal)
        masked = scores.masked_fill(torch.ones(24, 24).triu(1).bool(), float("-inf")) if causal else scores
        assert lse.shape == (2, 4, 24) and lse.dtype == torch.float32
        torch.testing.assert_close(lse, masked.logsumexp(-1), atol=2e-6, rtol=0)
        torch.testing.assert_close(out, masked.softmax(-1) @ v, atol=2e-6, rtol=0)


def test_the_setting_is_validated_and_refused_when_set_later():
    assert tiny_config().anchor_attention == "split"
    assert tiny_config(anchor_attention="flash").anchor_attention == "flash"
    refused = "anchor_attention must be one of flash/split, not 'cudnn'"
    with pytest.raises(ValueError, match=f"invalid SpatialTTTConfig: {refused}"):
        tiny_config(anchor_attention="cudnn")
    q, k, v = after_cache(4, 2, 8, 8)
    with pytest.raises(ValueError, match=refused):
        causal_attention(q, k, v, 0, 0, None, "cudnn")


@pytest.mark.parametrize("setting", ["flash", "split"])
def test_the_setting_reaches_the_anchors_attention_only(monkeypatch, setting):
    """Anchor layers (3 and 7 of the tiny model) hand config.anchor_attention to causal_attention; TTT layers'
    windowed attention keeps flash. On the CPU the boolean-mask path runs either way: the same logits."""
    model = tiny_model()
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    with torch.no_grad():
        default_logits = model(**inputs).logits
    seen = []

    def recording(q, k, v, q_start, k_start, window, after_cache="flash"):
        seen.append((window is None, after_cache))
        return causal_attention(q, k, v, q_start, k_start, window, after_cache)

    monkeypatch.setattr(attention, "causal_attention", recording)
    model.config.anchor_attention = setting  # read when called, like mlp_piece
    with torch.no_grad():
        logits = model(**inputs).logits
    assert seen == [(False, "flash")] * 3 + [(True, setting)] + [(False, "flash")] * 3 + [(True, setting)]
    assert torch.equal(logits, default_logits)


def test_an_execution_setting_saved_loaded_and_left_out_of_the_stream_fingerprint(tmp_path, released_dir):
    """Like ttt_kernel: in our config.json, overridable at load time, the library default for a released folder,
    and a saved stream continues under either value."""
    save_model(tiny_model(anchor_attention="flash"), tmp_path / "ours")
    assert json.loads((tmp_path / "ours/config.json").read_text())["anchor_attention"] == "flash"
    loaded = load_model(tmp_path / "ours")
    assert (loaded.config.anchor_attention, loaded.ttt_settings["anchor_attention"].source) == ("flash", "checkpoint config")
    released = load_model(released_dir, anchor_attention="flash")
    assert (released.config.anchor_attention, released.ttt_settings["anchor_attention"].source) == ("flash", "override")
    assert load_model(released_dir).ttt_settings["anchor_attention"].source == "library default"
    with pytest.raises(CheckpointError, match="bad settings .*anchor_attention must be one of flash/split, not 'x'"):
        load_model(released_dir, anchor_attention="x")
    assert model_fingerprint(tiny_model(anchor_attention="flash")) == model_fingerprint(tiny_model())
