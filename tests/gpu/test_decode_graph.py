"""Graphed decoding on CUDA (the step compiled and replayed as a CUDA graph) against eager decoding, on the tiny
model: fp32 agrees to rounding (tokens, logits and the state left behind), bf16 closely. The step advances its own
position counter inside the graph (the warm-ups before the capture are rewound), so a decode without stop tokens
synchronises with the host at no token after the first. Times nothing."""

import pytest
import torch

from spatial_ttt.static_decode import StaticDecoder, StaticDecoding, decode_step, decode_steps
from spatial_ttt.tiny import tiny_model

from core.helpers import video_prompt
from core.test_static_decode import assert_same_state  # tests/ is on sys.path (rootdir-based packages)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def fp32_model():
    """Muon off (its bf16 Newton-Schulz amplifies rounding differences); chunk 8 and window 16, so that a decode
    crosses chunk updates and the window ring wraps."""
    return tiny_model(use_muon=False, lact_chunk_size=8, window_size=16).cuda()


def on_cuda(inputs):
    return {k: v.cuda() for k, v in inputs.items()}


def fed_logits(model, kind, inputs, tokens, mode=torch.no_grad):
    """Logits before each of ``tokens`` [B, n] fed after the prompt and after the last; the state left."""
    model.config.decode_kernel = kind
    state = model.new_state(inputs["input_ids"].shape[0])
    with mode():
        seen = [model(**inputs, state=state).logits[:, -1]]
        state.begin_decode()
        with decode_steps(model, state, tokens.shape[1]) as feed:
            for token in tokens.unbind(1):
                seen.append(feed(token))
    return torch.stack(seen, 1).float(), state


@pytest.mark.parametrize("batch", [1, 2])
def test_graphed_decoding_matches_eager_in_fp32(fp32_model, batch):
    inputs = on_cuda(video_prompt(frames_groups=2, grid_hw=4, batch=batch))
    outs = {}
    for kind in ("eager", "graphed"):
        fp32_model.config.decode_kernel = kind
        state = fp32_model.new_state(batch)
        outs[kind] = fp32_model.generate(**inputs, max_new_tokens=20, state=state), state
    assert fp32_model.static_decoding.last["kernel"] == "graphed" and fp32_model.static_decoding.last["captured"]
    assert outs["graphed"][0].tolist() == outs["eager"][0].tolist()
    assert_same_state(outs["eager"][1], outs["graphed"][1], atol=1e-4)
    tokens = outs["eager"][0][:, -20:-1]
    expected, _ = fed_logits(fp32_model, "eager", inputs, tokens)
    got, _ = fed_logits(fp32_model, "graphed", inputs, tokens)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def fed_tokens(batch: int, count: int, seed: int = 0) -> torch.Tensor:
    """Token ids [batch, count] from their own generator: the same whichever tests ran before."""
    return torch.randint(0, 500, (batch, count), generator=torch.Generator().manual_seed(seed)).cuda()


def test_graphed_decoding_serves_inference_mode_then_no_grad_callers(fp32_model):
    """Static buffers are made outside inference mode: a decode under torch.inference_mode() and a later one
    under no_grad (what generate uses) both run (the bug of issue 16 for the chunk graphs)."""
    inputs = on_cuda(video_prompt(frames_groups=2, grid_hw=4))
    tokens = fed_tokens(1, 10)
    expected, _ = fed_logits(fp32_model, "eager", inputs, tokens)
    for mode in (torch.inference_mode, torch.no_grad):
        got, _ = fed_logits(fp32_model, "graphed", inputs, tokens, mode)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_a_step_compiled_for_two_batch_sizes_serves_inference_mode_then_no_grad():
    """The order in which the test above failed once in a full GPU run (session 13, on a loaded host; it passed
    alone and after the batch-1 case): graphed decodes of batch 1, then 2, under no_grad, then batch 1 under
    inference_mode and no_grad again, on one fresh model, each against eager decoding of the same tokens."""
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16).cuda()
    for batch, mode in ((1, torch.no_grad), (2, torch.no_grad), (1, torch.inference_mode), (1, torch.no_grad)):
        inputs = on_cuda(video_prompt(frames_groups=2, grid_hw=4, batch=batch))
        tokens = fed_tokens(batch, 10, seed=batch)
        expected, _ = fed_logits(model, "eager", inputs, tokens)
        got, _ = fed_logits(model, "graphed", inputs, tokens, mode)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0, msg=lambda m: f"batch {batch}, {mode.__name__}: {m}")


def test_graphed_decoding_is_close_to_eager_in_bf16():
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16).cuda().to(torch.bfloat16)
    inputs = on_cuda(video_prompt(frames_groups=2, grid_hw=4))
    inputs["pixel_values_videos"] = inputs["pixel_values_videos"].bfloat16()
    tokens = torch.randint(0, 500, (1, 18), device="cuda")
    expected, eager_state = fed_logits(model, "eager", inputs, tokens)
    got, graphed_state = fed_logits(model, "graphed", inputs, tokens)
    assert model.static_decoding.last["captured"]
    # bf16 rounds at other places when fused (relative L2 over all 19 steps; a wrong position or rule gives ~1)
    assert float((got - expected).norm() / expected.norm()) < 5e-2
    # 22 prompt tokens + 18 fed, chunk 8: updates after the 1st, 8th and 16th fed tokens
    assert graphed_state.layers[0].ttt.pending == eager_state.layers[0].ttt.pending == 2
    assert graphed_state.num_tokens == eager_state.num_tokens == 40


def test_graphed_decoding_reads_nothing_back_per_token(fp32_model):
    """From the second fed token on (the first builds the buffers and captures the step), a decode without stop
    tokens makes no synchronising CUDA call: no position is copied in, nothing is read back, also across the decode
    rule's updates (after the 8th and 16th fed tokens). With a stop token, whether every row stopped is one."""
    inputs = on_cuda(video_prompt(frames_groups=2, grid_hw=4))
    fp32_model.config.decode_kernel = "eager"
    expected = fp32_model.generate(**inputs, max_new_tokens=20)[:, -20:]
    fp32_model.config.decode_kernel = "graphed"
    fp32_model.generate(**inputs, max_new_tokens=20)  # compiles the step, captures the updates' chunk graphs

    def decode(stops):
        state = fp32_model.new_state(1)
        with torch.no_grad():
            logits = fp32_model(**inputs, state=state).logits[:, -1]
        chosen = []

        def watch(token):  # tokens 1..18 are fed under the check; the 20th is not fed
            chosen.append(token)
            torch.cuda.set_sync_debug_mode("error" if 2 <= len(chosen) < 20 else "default")

        try:
            return fp32_model.decode(state, logits, 20, stop_token_ids=stops, on_token=watch)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    assert decode(None).tolist() == expected.tolist()
    unseen = sorted(set(range(500)) - set(expected[0].tolist()))[0]
    with pytest.raises(RuntimeError, match="synchroniz"):
        decode([unseen])


def test_bf16_static_weights_give_the_bits_of_fp32_copies(monkeypatch):
    """In bf16 precision the static fast weights are bf16, rounded once per update; the captured step gives the
    logits and state, bit for bit, of one that rounds fp32 copies at every token. The step runs uncompiled (still
    captured as a CUDA graph): what is pinned here is the dtype rule, not the compiler, which fuses a compiled
    step's casts into fp32 kernels (without emulate_precision_casts the fp32-copies step did not round: logits 0.05
    apart on the CPU's inductor; with it the two compiled steps still differed on the H200, session 15)."""
    monkeypatch.setattr(StaticDecoding, "step", lambda self, compiled: decode_step)
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16, fast_weight_precision="bf16").cuda()
    inputs = on_cuda(video_prompt(frames_groups=2, grid_hw=4, batch=2))
    tokens = torch.randint(0, 500, (2, 18), device="cuda")
    got, state = fed_logits(model, "graphed", inputs, tokens)
    assert model.static_decoding.last["captured"]
    monkeypatch.setattr(StaticDecoder, "weight_dtype", staticmethod(lambda precision: torch.float32))
    expected, expected_state = fed_logits(model, "graphed", inputs, tokens)
    assert torch.equal(got, expected)
    assert_same_state(expected_state, state, atol=0)
