"""Kernels of the fast-weight step (reference / compiled / graphed), precision modes, and who owns the compiled
callables and graph buffers. CUDA-only checks are in tests/gpu/test_gpu_paths.py."""

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from spatial_ttt.layers.spatial_conv import (VideoSpan, conv_frame_groups, conv_token_groups, conv_video_tokens,
                                             depthwise_conv3, make_conv)
from spatial_ttt.ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream
from spatial_ttt.ops.conv_triton import conv_token_groups_triton, depthwise_conv3_triton
from spatial_ttt.ops.fast_weight_kernels import NORM_ARGS, STATE_ARGS, ChunkGraph
from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def random_inputs(bh=2, n=50, d=16, momentum=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(bh, d, d, generator=g) / d**0.5 for _ in range(3)]
    q, k, v = (torch.nn.functional.normalize(torch.randn(bh, n, d, generator=g), dim=-1) for _ in range(3))
    lr = [torch.rand(bh, n, 1, generator=g) * 0.3 for _ in range(3)]
    mom = torch.rand(bh, n, 1, generator=g) if momentum else None
    return FastWeights.start(*w), q, TokenStream(k, v, *lr, mom)


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def prefill(kernel, weights, q, tokens, cut=0):
    """Outputs and memory of a prefill in two calls (``cut`` tokens first)."""
    memory = FastWeightMemory(weights)
    outs = [memory.advance(q[:, :cut], tokens.slice(0, cut), kernel)] if cut else []
    outs.append(memory.advance(q[:, cut:], tokens.slice(cut), kernel))
    return torch.cat(outs, 1), memory


@pytest.mark.parametrize("momentum", [False, True])
@pytest.mark.parametrize("cut,n", [(0, 100), (0, 96), (5, 100), (5, 20), (0, 3)])
def test_graphed_kernel_buffers_give_the_reference_results(momentum, cut, n):
    """The graphed kernel's bookkeeping (static buffers, runs of other lengths, momentum before the first
    update), run uncaptured on CPU: identical to the reference in fp32."""
    weights, q, tokens = random_inputs(n=n, momentum=momentum)
    ref_out, ref = prefill(FastWeightKernel.standalone(24, True), weights, q, tokens, cut)
    graphed = FastWeightKernel.standalone(24, True, kernel="graphed")
    out, mem = prefill(graphed, weights, q, tokens, cut)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    for a, b in zip(mem.weights[:3], ref.weights[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert (mem.weights.momentum is None) == (ref.weights.momentum is None) and mem.pending == ref.pending
    assert len(graphed._graphs) <= 2  # one per fixed shape: a full chunk of queries + update, an update alone
    if len(graphed._graphs) == 2:  # ... sharing one set of static input buffers (the weights, momentum, chunk)
        update, full = sorted((g.inputs for g in graphed._graphs.values()), key=lambda inputs: inputs[9] is not None)
        assert update[9] is None and full[9] is not None
        assert all(a is b for a, b in zip(update, full) if a is not None)
        assert len(graphed._inputs) == sum(t is not None for t in full)


def test_graphed_weights_stay_in_the_kernel_buffers_within_a_call_and_never_leak_out(monkeypatch):
    """Within one advance the graphed step finds the weights, momentum and norms already in its buffers (copied in
    once, at the first chunk); the memory afterwards owns copies, so a snapshot survives the next advance of its
    source."""
    weights, q, tokens = random_inputs(n=130)
    kernel = FastWeightKernel.standalone(24, False, kernel="graphed")
    resident, call = [], ChunkGraph.__call__

    def spy(self, *tensors, transient=False):
        resident.append([tensors[i] is self.inputs[i] for i in STATE_ARGS + NORM_ARGS])
        return call(self, *tensors, transient=transient)

    monkeypatch.setattr(ChunkGraph, "__call__", spy)
    memory = FastWeightMemory(weights)
    memory.advance(q[:, :100], tokens.slice(0, 100), kernel)
    assert resident == [[False] * 9] + [[True] * 9] * 3  # 4 chunks updated: 96 = 4 x 24 followed by tokens
    buffers = {id(t) for t in kernel._inputs.values()}
    owned = lambda m: (*m.weights[:3], *m.weights.momentum, *m.weights.norms)  # noqa: E731
    assert not buffers & {id(t) for t in owned(memory)}
    snapshot = dataclasses.replace(memory)
    kept = [t.clone() for t in owned(snapshot)]
    memory.advance(q[:, 100:], tokens.slice(100), kernel)
    assert resident[4] == [False] * 9  # a new call copies its weights in again
    assert all(torch.equal(a, b) for a, b in zip(owned(snapshot), kept))
    assert not torch.equal(memory.weights.w0, snapshot.weights.w0)


def test_layers_sharing_one_graphed_kernel_keep_their_own_weights_and_norms():
    """A model's TTT layers share one kernel, hence its static buffers: three memories with different weights
    (so different norms) advanced in turn, piece by piece, each equal to its own reference run."""
    kernel = FastWeightKernel.standalone(24, True, kernel="graphed")
    runs = [random_inputs(n=110, seed=seed) for seed in range(3)]
    memories = [FastWeightMemory(FastWeights.start(*(w * (1 + s) for w in run[0][:3]))) for s, run in enumerate(runs)]
    references = [FastWeightMemory(m.weights) for m in memories]
    outs, ref_outs = [[], [], []], [[], [], []]
    for start, end in ((0, 30), (30, 77), (77, 110)):
        for i, (_, q, tokens) in enumerate(runs):
            outs[i].append(memories[i].advance(q[:, start:end], tokens.slice(start, end), kernel))
            ref_outs[i].append(references[i].advance(q[:, start:end], tokens.slice(start, end),
                                                     FastWeightKernel.standalone(24, True)))
    for i in range(3):
        torch.testing.assert_close(torch.cat(outs[i], 1), torch.cat(ref_outs[i], 1), rtol=0, atol=1e-6)
        for a, b in zip((*memories[i].weights[:3], *memories[i].weights.norms),
                        (*references[i].weights[:3], *references[i].weights.norms)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_warm_ups_before_a_capture_leave_the_weights_as_they_were(monkeypatch):
    """On CUDA a new graph's warm-ups run the step on its buffers before the capture, and the buffers may hold the
    very weights being advanced (a graph first needed right after a transient step). Simulated on the CPU (warm-ups
    run eagerly after the buffers are filled, as the capture path does): the rewind puts the weights back."""
    init = ChunkGraph.__init__

    def warming(self, step, example, capture, pool=None, warmups=2, rewind=None, inputs=None):
        init(self, step, example, capture, pool, warmups, rewind=rewind, inputs=inputs)
        for _ in range(warmups):
            step(*self.inputs)
            if rewind is not None:
                rewind()

    monkeypatch.setattr(ChunkGraph, "__init__", warming)
    weights, q, tokens = random_inputs(n=100)
    ref_out, ref = prefill(FastWeightKernel.standalone(24, True), weights, q, tokens, cut=5)
    graphed = FastWeightKernel.standalone(24, True, kernel="graphed")
    out, mem = prefill(graphed, weights, q, tokens, cut=5)  # an update-only graph, then a full one on its buffers
    assert len(graphed._graphs) == 2
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    for a, b in zip(mem.weights[:3], ref.weights[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_graph_buffers_made_under_inference_mode_serve_later_no_grad_calls():
    """Was: buffers first created under inference_mode were inference tensors, and the next no_grad call
    (what generate uses) failed with 'Inplace update to inference tensor outside InferenceMode'."""
    weights, q, tokens = random_inputs(n=60)
    kernel = FastWeightKernel.standalone(24, False, kernel="graphed")
    with torch.inference_mode():
        first, _ = prefill(kernel, weights, q, tokens)
    assert kernel._graphs and not any(t.is_inference() for g in kernel._graphs.values() for t in g.inputs if t is not None)
    with torch.no_grad():
        second, _ = prefill(kernel, weights, q, tokens)
    assert torch.equal(first, second)


def test_bf16_precision_differs_from_fp32_by_a_bounded_nonzero_amount():
    weights, q, tokens = random_inputs(n=100, d=32)
    exact, _ = prefill(FastWeightKernel.standalone(24, False), weights, q, tokens)
    fast, _ = prefill(FastWeightKernel.standalone(24, False, "bf16"), weights, q, tokens)
    assert 1e-4 < rel(fast, exact) < 2e-2  # measured 5.2e-3: bf16 operands carry 8 significant bits


def test_model_precision_setting_reaches_prefill_decode_and_streaming(golden_dir):
    """fp32 (default) is the reference (the golden tests hold it); bf16 moves the logits a little, everywhere."""
    from spatial_ttt import load_reference_checkpoint
    from safetensors.torch import load_file

    model = load_reference_checkpoint(golden_dir / "muon_off")
    inputs = load_file(golden_dir / "muon_off" / "inputs.safetensors")
    expected = load_file(golden_dir / "muon_off" / "expected.safetensors")["logits_stream"]
    with torch.no_grad():
        model.config.fast_weight_precision = "bf16"
        fast = model(**inputs).logits
        model.config.fast_weight_precision = "fp32"
        exact = model(**inputs).logits
    torch.testing.assert_close(exact, expected, atol=1e-4, rtol=0)
    assert 1e-3 < (fast - expected).abs().max() < 0.2  # measured 0.045 (fp32: 5.2e-6)


def test_decoded_tokens_follow_the_precision_setting():
    model = tiny_model(lact_chunk_size=8, use_muon=False)
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    state = model.new_state(1)
    with torch.no_grad():
        model(**inputs, state=state)
        state.begin_decode()
        exact = model(torch.tensor([[9]]), state=state).logits
        model.config.fast_weight_precision = "bf16"
        state = model.new_state(1)
        model(**inputs, state=state)
        state.begin_decode()
        fast = model(torch.tensor([[9]]), state=state).logits
    assert 0 < (fast - exact).abs().max() < 0.1


def test_compiled_kernel_traces_whole_and_agrees_with_the_reference_on_cpu(monkeypatch):
    """The compiled kernel's step through dynamo with fullgraph=True. The aot_eager backend stands in for
    inductor, whose C++ code generation took 104 s for this test on a 2-core CI machine; on CUDA the real
    compiled and graphed kernels are checked in tests/gpu/test_gpu_paths.py."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, **{**kw, "backend": "aot_eager"}))
    weights, q, tokens = random_inputs(n=60)
    for muon in (False, True):
        ref_out, ref = prefill(FastWeightKernel.standalone(24, muon), weights, q, tokens, cut=5)
        compiled = FastWeightKernel.standalone(24, muon, kernel="compiled")
        out, mem = prefill(compiled, weights, q, tokens, cut=5)
        assert compiled._compiled  # the step did go through torch.compile
        torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
        torch.testing.assert_close(mem.weights.w0, ref.weights.w0, rtol=0, atol=1e-5)


def test_a_model_owns_one_kernel_shared_by_its_layers_and_copies_get_their_own():
    model = tiny_model()
    kernels = {id(layer.self_attn.kernel) for layer in model.model.language_model.layers if layer.is_ttt}
    assert len(kernels) == 1
    other = tiny_model()
    assert other.model.language_model.layers[0].self_attn.kernel is not model.model.language_model.layers[0].self_attn.kernel
    kernel = model.model.language_model.layers[0].self_attn.kernel
    kernel.compiled(rel)  # torch.compile is lazy: wraps, compiles nothing until called
    copied = copy.deepcopy(model).model.language_model.layers[0].self_attn.kernel
    assert copied is not kernel and not copied._compiled and copied.config is not model.config


def test_kernel_choice_follows_the_config():
    model = tiny_model()
    kernel = model.model.language_model.layers[0].self_attn.kernel
    cpu = torch.zeros(1)
    assert kernel.kind(cpu) == "reference"  # auto on CPU
    model.config.ttt_kernel = "graphed"
    assert kernel.kind(cpu) == "graphed" and kernel.kind(cpu, needs_grad=True) == "compiled"
    model.config.ttt_kernel = "reference"
    assert kernel.fused(len, cpu) is len


def test_conv_stencil_is_triton_only_where_the_graphed_kernel_runs_on_cuda():
    """One rule for one-shot prefill and streaming (both ask TTTAttention.conv_stencil). CI has no GPU: a stand-in
    that reports is_cuda is enough, as the choice reads nothing else of the tensor."""
    layer = tiny_model().model.language_model.layers[0].self_attn
    cuda = SimpleNamespace(is_cuda=True)
    cpu = torch.zeros(1)
    compiled = layer.kernel.compiled(depthwise_conv3)  # lazy: compiles nothing until called
    with torch.no_grad():
        assert layer.conv_stencil(cpu) is depthwise_conv3  # auto on CPU
        assert layer.conv_stencil(cuda) is depthwise_conv3_triton  # auto on CUDA, inference
        layer.config.ttt_kernel = "graphed"
        assert layer.conv_stencil(cpu) is compiled and layer.conv_stencil(cuda) is depthwise_conv3_triton
        layer.config.ttt_kernel = "compiled"
        assert layer.conv_stencil(cuda) is compiled
        layer.config.ttt_kernel = "reference"
        assert layer.conv_stencil(cuda) is depthwise_conv3
    trained = layer.kernel.compiled(depthwise_conv3, dynamic=True)
    for setting in ("auto", "graphed"):  # autograd on: the differentiable compiled stencil, dynamic from the start
        layer.config.ttt_kernel = setting
        assert layer.conv_stencil(cuda) is trained


def test_the_streaming_conv_follows_the_same_rule():
    """TTTAttention.conv_groups (a piece's frame groups among its tokens): the Triton kernel over the groups' rows
    exactly where conv_stencil is the Triton stencil, else the gathered form over conv_stencil's stencil."""
    layer = tiny_model().model.language_model.layers[0].self_attn
    cuda, cpu = SimpleNamespace(is_cuda=True), torch.zeros(1)
    for setting in ("auto", "graphed", "compiled", "reference"):
        layer.config.ttt_kernel = setting
        for x in (cpu, cuda):
            for grad in (False, True):
                with torch.set_grad_enabled(grad):
                    chosen, stencil = layer.conv_groups(x), layer.conv_stencil(x)
                if stencil is depthwise_conv3_triton:
                    assert chosen is conv_token_groups_triton, (setting, x, grad)
                else:
                    assert chosen.func is conv_token_groups and chosen.keywords == {"stencil": stencil}


def test_a_training_stage_compiles_once_for_every_token_count():
    """Under autograd a fused stage is compiled with symbolic sizes from its first call: a resumed run's first step
    must not run a graph specialised to its shapes (on an H100 that gave NaN gradients, EVIDENCE.md session 11),
    and a new token count must not recompile. Inference keeps dynamo's default (static, then automatic)."""
    from spatial_ttt.layers.ttt import branch_epilogue

    kernel = FastWeightKernel.standalone(8, False, kernel="compiled")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for length in (5, 9, 12):
        out = torch.randn(2 * 3, length, 4, requires_grad=True)
        gate = torch.randn(2, length, 3, requires_grad=True)
        stage = kernel.fused(branch_epilogue, out)
        result = stage(out, torch.ones(4), 1e-6, gate, 3, torch.float32)
        result.sum().backward()
        expected = branch_epilogue(out, torch.ones(4), 1e-6, gate, 3, torch.float32)
        torch.testing.assert_close(result, expected)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    with torch.no_grad():
        assert kernel.fused(branch_epilogue, out) is not stage  # inference: its own, default-compiled callable


@pytest.mark.parametrize("grid", [(3, 4, 5), (1, 2, 2), (4, 1, 3)])
def test_one_stencil_equals_conv3d_for_whole_videos_and_frame_groups(grid):
    t, h, w = grid
    conv = make_conv(8)
    with torch.no_grad():
        conv.weight.normal_()
    x = torch.randn(2, 7 + t * h * w + 5, 8)
    videos = [VideoSpan(1, torch.arange(7, 7 + t * h * w), grid), VideoSpan(0, torch.arange(3, 3 + t * h * w), grid)]
    with torch.no_grad():
        out = conv_video_tokens(x, conv, videos)
        for video in videos:
            volume = x[video.row, video.indices].T.reshape(1, 8, t, h, w)
            expected = conv(volume).reshape(8, -1).T  # the module: Conv3d with replicate padding
            torch.testing.assert_close(out[video.row, video.indices], expected, atol=1e-5, rtol=0)
        groups = x[:, 3 : 3 + t * h * w].view(2, t, h * w, 8)
        for first in range(t):  # every run of consecutive groups, between its neighbours
            for last in range(first + 1, t + 1):
                before = groups[:, first - 1] if first else None
                after = groups[:, last] if last < t else None
                piece = conv_frame_groups(conv.weight, before, groups[:, first:last], after, (h, w))
                expected = out[0, 3 + first * h * w : 3 + last * h * w].view(last - first, h * w, 8)
                torch.testing.assert_close(piece[0], expected, atol=1e-6, rtol=0)
                # the streaming engine's form: the same groups found by their first rows among the tokens
                rows = slice(3 + first * h * w, 3 + last * h * w)
                starts = torch.arange(first, last) * h * w + 3
                tokens = conv_token_groups(x[:1], starts, None if before is None else before[:1],
                                           None if after is None else after[:1], (h, w), conv.weight)
                torch.testing.assert_close(tokens[0, rows], out[0, rows], atol=1e-6, rtol=0)
                assert torch.equal(tokens[0, : rows.start], x[0, : rows.start])
                assert torch.equal(tokens[0, rows.stop :], x[0, rows.stop :])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_model_generates_the_same_tokens_on_cuda_with_every_kernel():
    model = tiny_model(lact_chunk_size=8, use_muon=False)
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    expected = model.generate(**inputs, max_new_tokens=8)[0, -8:].tolist()
    model = model.cuda()
    cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
    for kind in ("reference", "compiled", "graphed"):
        model.config.ttt_kernel = kind
        with torch.inference_mode():  # then no_grad (generate's own): the graph buffers must serve both
            first = model(**cuda_inputs).logits
        assert model.generate(**cuda_inputs, max_new_tokens=8)[0, -8:].tolist() == expected, kind
        assert first.isfinite().all()
