"""What a prefill leaves behind is compact, and the long-prompt memory savings do not change results."""

import torch

from spatial_ttt.models import modeling
from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def storage_bytes(t):
    return t.untyped_storage().nbytes()


def test_state_keeps_compact_copies_not_views_of_the_prompt():
    """Was: the memory kept a slice of the prompt's update inputs and the window cache a slice of its keys, which
    kept each layer's whole [S, d] tensors alive (38.5 GiB at 1024 frames on the 2B shape)."""
    model = tiny_model(lact_chunk_size=8, window_size=6)
    inputs = video_prompt(frames_groups=6, grid_hw=4)  # 50 tokens: longer than a chunk and twice the window
    state = model.new_state(1)
    with torch.no_grad():
        model(**inputs, state=state)
    for layer in state.layers:
        if layer.ttt is None:
            continue
        assert layer.ttt.recent.length == 8 and layer.ttt.pending == 2  # 50 = 6 chunks + 2
        for t in layer.ttt.recent:
            assert storage_bytes(t) == t.numel() * t.element_size()
        assert layer.kv.keys.shape[2] == 6
        assert storage_bytes(layer.kv.keys) == layer.kv.keys.numel() * layer.kv.keys.element_size()


def test_mlp_in_pieces_gives_the_same_logits(monkeypatch):
    model = tiny_model()
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    with torch.no_grad():
        whole = model(**inputs).logits
        monkeypatch.setattr(modeling, "MLP_PIECE", 5)
        pieces = model(**inputs).logits
    torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=0)


def test_a_state_filled_under_inference_mode_continues_under_no_grad():
    """Was: the anchor KV buffer, allocated under inference_mode, refused the next no_grad append ('Inplace update
    to inference tensor outside InferenceMode')."""
    model = tiny_model(lact_chunk_size=8)
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    logits = []
    for mode in (torch.inference_mode, torch.no_grad):
        state = model.new_state(1)
        with mode():
            model(**inputs, state=state)
        with torch.no_grad():
            logits.append(model(torch.tensor([[5]]), state=state).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=0, rtol=0)


def test_fast_weight_branch_in_pieces_gives_the_same_logits_and_state(monkeypatch):
    from spatial_ttt.layers import ttt

    model = tiny_model(lact_chunk_size=8, use_muon=False)
    inputs = video_prompt(frames_groups=6, grid_hw=4)  # 50 tokens: 7 chunks
    results = []
    for piece in (16384, 16):  # 16: pieces of 2 chunks
        monkeypatch.setattr(ttt, "BRANCH_PIECE", piece)
        state = model.new_state(1)
        with torch.no_grad():
            logits = model(**inputs, state=state).logits
            stateless = model(**inputs).logits
        results.append((logits, stateless, state.layers[0].ttt))
    (whole, whole_stateless, whole_memory), (pieces, pieces_stateless, pieces_memory) = results
    torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces_stateless, whole_stateless, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces_memory.weights.w0, whole_memory.weights.w0, atol=1e-6, rtol=0)
    assert pieces_memory.pending == whole_memory.pending == 2
