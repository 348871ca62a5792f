"""Static decoding (config.decode_kernel="graphed"; on CPU its buffers and step run uncompiled and uncaptured)
against eager decoding: the same tokens, logits and, after decoding, the same ModelState."""

import copy

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from spatial_ttt.ops import TokenStream
from spatial_ttt.state import KVCache
from spatial_ttt.static_decode import StaticDecoder, StaticDecoding, decode_steps
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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_precision_decodes_the_same_tokens_as_eager(one_thread, precision):
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16, fast_weight_precision=precision)
    inputs = video_prompt(frames_groups=2, grid_hw=4, batch=2)
    (eager, eager_state), (graphed, graphed_state) = generate_both(model, inputs, 20)
    assert graphed.tolist() == eager.tolist()
    # bf16 operands: a rounding-level difference in an input can move a product by a bf16 step
    assert_same_state(eager_state, graphed_state, atol=ATOL if precision == "fp32" else 2e-3)


def static_decode(model, inputs, tokens):
    """Feeds ``tokens`` [B, n] through a StaticDecoder (uncaptured) after the prompt: the logits before each and
    after the last, the decoder and the state."""
    state, logits = prefilled(model, inputs)
    state.begin_decode()
    decoder = StaticDecoder(model, state, tokens.shape[1], model.static_decoding, capture=False)
    with torch.no_grad():
        seen = [logits] + [decoder.step(token) for token in tokens.unbind(1)]
    decoder.finish()
    return torch.stack(seen, 1), decoder, state


@torch._dynamo.config.patch(recompile_limit=2)  # (monkeypatch would delete the setting afterwards)
@pytest.mark.parametrize("batch", [1, 2])
def test_the_compiled_layers_share_one_graph_per_kind_of_layer(one_thread, monkeypatch, batch):
    """What CUDA runs: the step with its layers compiled. The tiny model's 6 TTT layers share one graph and its 2
    anchors another (the 2B model's 21 and 7; compiled as one function, the 28 layers made one graph whose first
    compilation took 91-97 s), across the decode rule's updates, and the step decodes as eager does. aot_eager
    stands in for inductor (the guards are dynamo's)."""
    compile_, steps = torch.compile, StaticDecoding.step
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, **{**kw, "backend": "aot_eager"}))
    monkeypatch.setattr(StaticDecoding, "step", lambda self, compiled: steps(self, True))  # as on CUDA
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16)
    inputs = video_prompt(frames_groups=2, grid_hw=4, batch=batch)
    tokens = model.generate(**inputs, max_new_tokens=20)[:, -20:-1]
    expected, expected_state = decode_logits(model, "eager", inputs, tokens)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    got, _, state = static_decode(model, inputs, tokens)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert_same_state(expected_state, state)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    assert {ttt: len(c.variants) for ttt, c in model.static_decoding._layers.items()} == {True: 1, False: 1}


def static_weights(decoder):
    return [w for buffer in decoder.buffers if buffer.weights is not None for w in buffer.weights]


def test_bf16_static_weights_are_rounded_once_and_give_the_same_bits(one_thread, monkeypatch):
    """In bf16 precision the products round the weights to bf16 at every token; the decoder keeps them in bf16,
    rounded when the decode rule's update rebuilds them: the same logits and state, bit for bit, as fp32 copies."""
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16, fast_weight_precision="bf16")
    inputs = video_prompt(frames_groups=2, grid_hw=4, batch=2)
    tokens = model.generate(**inputs, max_new_tokens=20)[:, -20:-1]
    got, decoder, state = static_decode(model, inputs, tokens)
    assert {w.dtype for w in static_weights(decoder)} == {torch.bfloat16}
    # after three updates (the 1st, 8th and 16th fed tokens) the static copies are the fp32 weights, rounded
    assert decoder.weights[0].w0.dtype == torch.float32
    assert torch.equal(decoder.buffers[0].weights[0], decoder.weights[0].w0.bfloat16())
    monkeypatch.setattr(StaticDecoder, "weight_dtype", staticmethod(lambda precision: torch.float32))
    expected, decoder, expected_state = static_decode(model, inputs, tokens)
    assert {w.dtype for w in static_weights(decoder)} == {torch.float32}
    assert torch.equal(got, expected)
    assert_same_state(expected_state, state, atol=0)


def test_fp32_static_weights_stay_fp32(model):
    _, decoder, _ = static_decode(model, video_prompt(frames_groups=2, grid_hw=4), torch.tensor([[9, 10, 11]]))
    assert {w.dtype for w in static_weights(decoder)} == {torch.float32}


def test_the_step_advances_its_position_counter_on_the_device(model):
    """The token's index, pending slot and rope positions are advanced by the step itself (and the pending slot
    moved back by the updates), never copied in from the host."""
    inputs = video_prompt(frames_groups=2, grid_hw=4, batch=2)
    tokens = torch.randint(0, 500, (2, 19))
    prompt_state, _ = prefilled(model, inputs)
    _, decoder, state = static_decode(model, inputs, tokens)
    # 22 prompt tokens + 19 fed, chunk 8: updates after the 1st, 8th and 16th fed tokens, 3 tokens pending
    assert state.layers[0].ttt.pending == 3
    assert decoder.where.tolist() == [22 + 19, 3, *(prompt_state.next_position + 19).tolist()]
    assert state.next_position.tolist() == (prompt_state.next_position + 19).tolist()


class HostReads(TorchDispatchMode):
    """Counts reads of a tensor's value by the host (``.item()``, ``bool(t)``: aten._local_scalar_dense)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def test_a_decode_without_stop_tokens_reads_nothing_back_per_token(model):
    """On a GPU a read forces the host to wait for the token's step: without stop tokens there is none, so the
    host runs ahead; with them, one per token (whether every row has stopped), as before."""
    model.config.decode_kernel = "graphed"
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    state, logits = prefilled(model, inputs)
    unseen = sorted(set(range(500)) - set(model.decode(copy.deepcopy(state), logits, 16)[0].tolist()))[0]

    def reads(new_tokens, stops):
        with HostReads() as mode:
            model.decode(copy.deepcopy(state), logits, new_tokens, stop_token_ids=stops)
        return mode.count

    assert reads(4, None) == reads(16, None) == reads(16, []) == 0
    assert reads(16, [unseen]) - reads(4, [unseen]) == 12


class BoolAllocations(TorchDispatchMode):
    """Counts new bool tensors allocated by ``torch.zeros`` (decode's per-row ``finished`` flags)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.count += func is torch.ops.aten.zeros.default and out.dtype == torch.bool
        return out


@pytest.mark.parametrize("kind", ["eager", "graphed"])
def test_a_decode_tracks_stopped_rows_only_when_there_are_stop_tokens(model, kind):
    """Was: the per-row ``finished`` flags were allocated even without stop tokens, never to be used."""
    model.config.decode_kernel = kind
    state, logits = prefilled(model, video_prompt(frames_groups=2, grid_hw=4, batch=2))
    tokens = {}
    for stops in (None, [], [3]):
        with BoolAllocations() as mode:
            tokens[str(stops)] = model.decode(copy.deepcopy(state), logits, 4, stop_token_ids=stops)
        assert mode.count == (1 if stops else 0), stops
    assert torch.equal(tokens["None"], tokens["[]"])


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
