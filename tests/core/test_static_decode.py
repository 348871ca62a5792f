"""Static decoding (config.decode_kernel="graphed"; on CPU its buffers and step run uncompiled and uncaptured)
against eager decoding: the same tokens, logits and, after decoding, the same ModelState."""

import numpy as np
import pytest
import torch

from spatial_ttt.ops import TokenStream
from spatial_ttt.state import KVCache
from spatial_ttt.static_decode import decode_steps
from spatial_ttt.streaming import StreamSession
from spatial_ttt.tiny import tiny_config, tiny_model

from .helpers import video_prompt
from .test_stream_session import TURN_END, assert_same_memory

ATOL = 2e-5  # fp32: attention over a ring/buffer sums in another order than eager SDPA


@pytest.fixture
def model(one_thread):
    """Muon off: Newton-Schulz runs in bf16, which amplifies fp32 rounding differences chaotically. A window of 16
    tokens: the prompts are longer, so the ring of window keys wraps."""
    return tiny_model(use_muon=False, lact_chunk_size=8, window_size=16)


def prefilled(model, inputs):
    state = model.new_state(inputs["input_ids"].shape[0])
    with torch.no_grad():
        return state, model(**inputs, state=state).logits[:, -1]


def decode_logits(model, kind, inputs, tokens):
    """Feeds the given tokens [B, n] one by one after the prompt; the logits before each and after the last, and
    the state."""
    model.config.decode_kernel = kind
    state, logits = prefilled(model, inputs)
    state.begin_decode()
    seen = [logits]
    with torch.no_grad(), decode_steps(model, state, tokens.shape[1]) as feed:
        for token in tokens.unbind(1):
            seen.append(feed(token))
    return torch.stack(seen, 1), state


def state_tensors(state):
    """Every tensor and counter of a ModelState, by name."""
    out = {"num_tokens": state.num_tokens, "next_position": state.next_position, "decoding": state.decoding}
    for i, layer in enumerate(state.layers):
        out[f"{i}.keys"], out[f"{i}.values"], out[f"{i}.end"] = layer.kv.keys, layer.kv.values, layer.kv.end
        if layer.ttt is None:
            continue
        w = layer.ttt.weights
        out.update({f"{i}.w{j}": t for j, t in enumerate(w[:3])})
        out.update({f"{i}.norm{j}": t for j, t in enumerate(w.norms)})
        out.update({f"{i}.momentum{j}": t for j, t in enumerate(w.momentum or ())})
        out[f"{i}.pending"] = layer.ttt.pending
        out.update({f"{i}.recent.{name}": t for name, t in zip(TokenStream._fields, layer.ttt.recent or ())})
    return out


def assert_same_state(a, b, atol=ATOL):
    ta, tb = state_tensors(a), state_tensors(b)
    assert ta.keys() == tb.keys()
    for key, value in ta.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(tb[key], value, atol=atol, rtol=0, msg=key)
        else:
            assert tb[key] == value, key


def generate_both(model, inputs, max_new_tokens, **kwargs):
    out = {}
    for kind in ("eager", "graphed"):
        model.config.decode_kernel = kind
        state = model.new_state(inputs["input_ids"].shape[0])
        out[kind] = model.generate(**inputs, max_new_tokens=max_new_tokens, state=state, **kwargs), state
        assert model.static_decoding.last["kernel"] == kind
    return out["eager"], out["graphed"]


def test_a_text_prompt_decodes_the_same_tokens_and_logits(model):
    inputs = {"input_ids": torch.arange(7, 37)[None]}
    (eager, _), (graphed, _) = generate_both(model, inputs, 20)
    assert graphed.tolist() == eager.tolist()
    expected, _ = decode_logits(model, "eager", inputs, eager[:, -20:-1])
    got, _ = decode_logits(model, "graphed", inputs, eager[:, -20:-1])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_a_video_prompt_decodes_the_same_across_chunk_updates(model):
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    (eager, eager_state), (graphed, graphed_state) = generate_both(model, inputs, 20)
    assert graphed.tolist() == eager.tolist()
    # 22 prompt tokens + 19 fed, chunk 8: updates after the 1st, 8th and 16th fed tokens, 3 tokens pending
    assert graphed_state.layers[0].ttt.pending == eager_state.layers[0].ttt.pending == 3
    prompt_state, _ = prefilled(model, inputs)
    assert not torch.equal(graphed_state.layers[0].ttt.weights.w0, prompt_state.layers[0].ttt.weights.w0)
    expected, _ = decode_logits(model, "eager", inputs, eager[:, -20:-1])
    got, _ = decode_logits(model, "graphed", inputs, eager[:, -20:-1])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_a_batch_of_two_decodes_each_row_as_eager(model):
    inputs = video_prompt(frames_groups=2, grid_hw=4, batch=2)
    (eager, eager_state), (graphed, graphed_state) = generate_both(model, inputs, 12)
    assert graphed.tolist() == eager.tolist()
    assert eager[0, -12:].tolist() != eager[1, -12:].tolist()
    assert_same_state(eager_state, graphed_state)


def test_the_state_after_decoding_is_eager_s_and_continues_the_same(model, monkeypatch):
    # a small growth block: the anchor buffer must grow for the decode (eager grows it while decoding)
    monkeypatch.setattr(KVCache, "GROWTH", 32)
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    (eager, eager_state), (graphed, graphed_state) = generate_both(model, inputs, 18)
    assert graphed.tolist() == eager.tolist()
    assert graphed_state.layers[3].kv.key_buffer.shape[2] >= graphed_state.num_tokens == 22 + 17
    assert_same_state(eager_state, graphed_state)
    follow_up = {"input_ids": torch.tensor([[9, 10, 11]])}
    outs = []
    for kind, state in (("eager", eager_state), ("graphed", graphed_state)):
        model.config.decode_kernel = kind
        outs.append(model.generate(**follow_up, max_new_tokens=10, state=state))
    assert outs[1].tolist() == outs[0].tolist()
    assert_same_state(eager_state, graphed_state)


def test_without_the_fast_weight_branch_the_memory_is_left_alone(one_thread):
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16, ttt_branch=False)
    (eager, eager_state), (graphed, graphed_state) = generate_both(model, video_prompt(), 12)
    assert graphed.tolist() == eager.tolist()
    assert_same_state(eager_state, graphed_state)


def test_a_decode_stopped_by_on_token_leaves_the_tokens_fed_so_far(model):
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    states = []
    for kind in ("eager", "graphed"):
        model.config.decode_kernel = kind
        state, logits = prefilled(model, inputs)
        seen = []

        def stop_at_ten(token):
            seen.append(token)
            if len(seen) == 10:
                raise KeyboardInterrupt  # what a closed connection or Ctrl-C does

        with pytest.raises(KeyboardInterrupt):
            model.decode(state, logits, max_new_tokens=20, on_token=stop_at_ten)
        assert state.num_tokens == 22 + 9  # the tenth token was chosen, not fed
        states.append(state)
    assert_same_state(*states)
    model.config.decode_kernel = "graphed"
    tokens = [model.generate(torch.tensor([[9, 10]]), max_new_tokens=6, state=s) for s in states]
    assert tokens[1].tolist() == tokens[0].tolist()


def test_kept_answers_and_later_questions_of_a_stream_match_eager(processor, one_thread, tmp_path):
    """A question from a snapshot, a kept one, the session saved and loaded, more frames, another question."""
    model = tiny_model(use_muon=False, lact_chunk_size=10)
    video = np.random.default_rng(0).integers(0, 255, size=(8, 64, 64, 3), dtype=np.uint8)
    times = [0.5 * i for i in range(8)]
    runs = {}
    for kind in ("eager", "graphed"):
        model.config.decode_kernel = kind
        session = model.stream(processor)
        session.observe(video[:4], times[:4])
        asked = session.ask_tokens(processor.suffix("Q").input_ids, 12)  # from a snapshot
        kept = session.ask_tokens(processor.suffix("Q").input_ids, 12, keep=True, turn_end_ids=TURN_END,
                                  stop_token_ids=[])
        session.save(tmp_path / f"{kind}.safetensors")
        session = StreamSession.load(tmp_path / f"{kind}.safetensors", model, processor)
        session.observe(video[4:], times[4:])
        later = session.ask_tokens(processor.suffix("Q").input_ids, 12)
        runs[kind] = (asked, kept, later, session)
    for eager, graphed in zip(runs["eager"][:3], runs["graphed"][:3]):
        assert graphed.tolist() == eager.tolist()
    assert runs["eager"][0].tolist() == runs["eager"][1].tolist()  # the snapshot's decode left the stream alone
    assert_same_memory(runs["eager"][3].stream, runs["graphed"][3].stream, atol=ATOL)


def test_an_unknown_decode_kernel_is_refused(model):
    with pytest.raises(ValueError, match="decode_kernel must be one of auto/eager/graphed, not 'fast'"):
        tiny_config(decode_kernel="fast")
    model.config.decode_kernel = "fast"  # set after construction: refused when decoding
    with pytest.raises(ValueError, match="decode_kernel must be one of auto/eager/graphed, not 'fast'"):
        model.generate(torch.tensor([[7, 8, 9]]), max_new_tokens=3)


def test_auto_decodes_eagerly_on_the_cpu(model):
    model.generate(torch.tensor([[7, 8, 9]]), max_new_tokens=3)
    assert model.config.decode_kernel == "auto" and model.static_decoding.last == {"kernel": "eager"}
