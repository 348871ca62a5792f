"""Generation: reference decode semantics, sampling, stop tokens, batches."""

import pytest
import torch

import spatial_ttt.generation as generation
import spatial_ttt.streaming as streaming

from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt

_real_prefill_in_pieces = streaming.prefill_in_pieces


def test_decode_matches_a_manual_reference_decode_loop():
    """The first decoded token updates the fast weights on the prompt's last chunk, which a fresh prefill of the
    longer sequence would not do: decoding must follow the reference, not re-prefill."""
    model = tiny_model(lact_chunk_size=8)
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    out = model.generate(**inputs, max_new_tokens=6)
    state = model.new_state(1)
    logits = model(**inputs, state=state).logits[:, -1]
    state.begin_decode()
    tokens = []
    for _ in range(6):
        tokens.append(int(logits.argmax(-1)))
        logits = model(torch.tensor([[tokens[-1]]]), state=state).logits[:, -1]
    assert out[0, -6:].tolist() == tokens
    with torch.no_grad():  # a re-prefill of prompt + 2 tokens answers the 2nd new token from other weights
        rest = {k: v for k, v in inputs.items() if k != "input_ids"}
        full = model(torch.cat([inputs["input_ids"], out[:, -6:-4]], 1), **rest).logits[:, -1]
    assert (full - logits_after_two(model, inputs, out[:, -6:-4])).abs().max() > 1e-4


def logits_after_two(model, inputs, two_tokens):
    state = model.new_state(1)
    model(**inputs, state=state)
    state.begin_decode()
    return model(two_tokens, state=state).logits[:, -1]


def test_a_generated_placeholder_id_is_decoded_as_text():
    model = tiny_model()
    inputs = video_prompt()
    state = model.new_state(1)
    model(**inputs, state=state)
    logits = torch.zeros(1, model.config.text_config.vocab_size)
    logits[0, model.config.video_token_id] = 1.0  # the greedy choice is the video placeholder id
    tokens = model.decode(state, logits, max_new_tokens=3)
    assert tokens[0, 0].item() == model.config.video_token_id and tokens.shape == (1, 3)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_long_video_prompt_is_prefilled_in_pieces_with_the_numbers_of_one_forward(batch, monkeypatch):
    model = tiny_model(use_muon=False, lact_chunk_size=10)
    inputs = video_prompt(frames_groups=9, grid_hw=4, batch=batch)  # 71 tokens
    whole, pieced = model.new_state(batch), model.new_state(batch)
    expected = generation.prefill(model, whole, piece_tokens=1000, **inputs)  # one forward
    got = generation.prefill(model, pieced, piece_tokens=14, **inputs)  # pieces of <= 14 tokens: 1-2 frame groups
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)  # measured: <= 3e-7
    # the states continue alike: a decode from each gives the same tokens and a follow-up the same logits
    assert model.decode(pieced, got, 12).tolist() == model.decode(whole, expected, 12).tolist()
    follow = torch.tensor([[9, 10, 11]] * batch)
    torch.testing.assert_close(model(follow, state=pieced).logits, model(follow, state=whole).logits, atol=1e-5, rtol=0)
    # generate takes this path for prompts longer than config.prefill_piece
    calls = []
    model.config.prefill_piece = 14
    monkeypatch.setattr(streaming, "prefill_in_pieces", lambda *a: calls.append(a[-1]) or _real_prefill_in_pieces(*a))
    tokens = model.generate(**inputs, max_new_tokens=6)
    assert calls == [14]
    model.config.prefill_piece = 1000
    assert model.generate(**inputs, max_new_tokens=6).tolist() == tokens.tolist()
