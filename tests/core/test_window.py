"""Sliding-window attention: the TTT layers' attention must honour W, checked against brute force."""

import torch

from spatial_ttt.layers.attention import Attention
from spatial_ttt.layers.rope import apply_rope
from spatial_ttt.state import KVCache
from spatial_ttt.tiny import tiny_config, tiny_model

from .helpers import video_prompt


def brute_force_window_attention(q, k, v, window):
    """Per query, softmax over exactly the keys i-W+1..i (GQA by repeating KV heads); q [B,H,S,hd]."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    out = torch.zeros_like(q)
    for i in range(q.shape[2]):
        lo = max(0, i - window + 1)
        scores = q[:, :, i : i + 1] @ k[:, :, lo : i + 1].transpose(-1, -2) / q.shape[-1] ** 0.5
        out[:, :, i] = (scores.softmax(-1) @ v[:, :, lo : i + 1])[:, :, 0]
    return out


def test_window_attention_matches_brute_force_one_shot_and_cached():
    text = tiny_config().text_config
    attn = Attention(text)
    x = torch.randn(2, 30, text.hidden_size)
    cos, sin = torch.ones(2, 30, text.head_dim), torch.zeros(2, 30, text.head_dim)  # identity rope
    q, k, v = attn.project(x)
    expected = brute_force_window_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), window=7)
    expected = expected.transpose(1, 2).flatten(2)
    one_shot = attn.attend(q, k, v, cos, sin, None, 0, window=7)
    torch.testing.assert_close(one_shot, expected, atol=1e-5, rtol=1e-5)
    cache, pieces, start = KVCache(window=7), [], 0
    for end in (5, 6, 19, 30):  # a cache trimmed to W keys gives the same answers
        s = slice(start, end)
        pieces.append(attn.attend(q[:, s], k[:, s], v[:, s], cos[:, s], sin[:, s], cache, start, window=7))
        assert cache.keys.shape[2] == min(7, end)
        start = end
    torch.testing.assert_close(torch.cat(pieces, 1), expected, atol=1e-5, rtol=1e-5)


def test_model_with_short_window_matches_brute_force_attention(monkeypatch):
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    model = tiny_model(window_size=9)
    with torch.no_grad():
        fast = model(**inputs).logits

    def brute_attend(self, q, k, v, cos, sin, cache, start, window, after_cache="flash"):
        q = apply_rope(q.transpose(1, 2), cos, sin)
        k = apply_rope(k.transpose(1, 2), cos, sin)
        out = brute_force_window_attention(q, k, v.transpose(1, 2), window or q.shape[2])
        return out.transpose(1, 2).flatten(2)

    monkeypatch.setattr(Attention, "attend", brute_attend)
    with torch.no_grad():
        brute = model(**inputs).logits
    torch.testing.assert_close(fast, brute, atol=2e-5, rtol=0)


def test_short_window_changes_logits_exactly_from_position_w():
    """Without the temporal conv (which lets later frames reach earlier tokens), positions < W see the same
    keys under any window and must be unchanged; every later position must change."""
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    full = tiny_model(window_size=4096, use_conv_layer=False)
    short = tiny_model(window_size=9, use_conv_layer=False)
    short.load_state_dict(full.state_dict())
    with torch.no_grad():
        a, b = full(**inputs).logits, short(**inputs).logits
    torch.testing.assert_close(a[:, :9], b[:, :9], atol=1e-5, rtol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().amax(-1).min() > 1e-4, "every position past W must feel the window"


def test_blocked_masked_attention_equals_one_block():
    from spatial_ttt.layers.attention import masked_attention

    q, k, v = torch.randn(1, 4, 50, 16), torch.randn(1, 2, 60, 16), torch.randn(1, 2, 60, 16)
    for window in (None, 7):  # 10 cached keys before the 50 queries
        whole = masked_attention(q, k, v, q_start=10, k_start=0, window=window, block=4096)
        blocked = masked_attention(q, k, v, q_start=10, k_start=0, window=window, block=6)
        torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=0)


def test_full_cache_grows_in_place_and_snapshots_do_not_disturb_it():
    from dataclasses import replace

    cache = KVCache(window=None)
    chunks = [torch.randn(1, 2, n, 4) for n in (3, 300, 1, 50)]
    for chunk in chunks[:2]:
        cache.append(chunk, -chunk)
    buffer = cache.key_buffer
    snapshot = replace(cache)  # what StreamSession.ask does before answering
    keys, _, first = snapshot.append(torch.full((1, 2, 5, 4), 9.0), torch.zeros(1, 2, 5, 4))
    assert first == 0 and keys.shape[2] == 308
    assert torch.equal(cache.keys, torch.cat(chunks[:2], 2)), "the original must not see the snapshot's tokens"
    for chunk in chunks[2:]:
        keys, values, _ = cache.append(chunk, -chunk)
    assert torch.equal(keys, torch.cat(chunks, 2)) and torch.equal(values, -torch.cat(chunks, 2))
    assert cache.key_buffer is buffer, "appends within capacity write in place (no re-allocation)"
    assert cache.end == 354
