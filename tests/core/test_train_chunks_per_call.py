"""Training's grouped chunk steps (``config.ttt_train_chunks_per_call`` = G): under autograd the chunk loop hands
the kernel G whole chunks at a time, which the compiled kernel runs in one compiled call; the math is that of one
call per chunk. The aot_eager backend stands in for inductor (whose C++ code generation takes minutes on a 2-core
CI machine): dynamo traces the same whole functions and AOTAutograd makes the same one autograd node per call."""

from collections import Counter

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from spatial_ttt.models.modeling import is_ttt_parameter
from spatial_ttt.ops import FastWeightKernel, FastWeightMemory
from spatial_ttt.tiny import tiny_model

from .test_kernels import random_inputs

CHUNK = 8
LAYERS = 2  # both TTT layers: calls per forward are LAYERS x calls per row


@pytest.fixture
def compiled(monkeypatch) -> tuple[Counter, dict]:
    """torch.compile on the aot_eager backend; counts the calls of the compiled functions by name and keeps the
    code object each was compiled from (dynamo's cache of compiled variants hangs on it)."""
    compile_ = torch.compile
    calls, codes = Counter(), {}

    def compile(fn, **kwargs):
        inner = compile_(fn, **{**kwargs, "backend": "aot_eager"})
        codes.setdefault(fn.__name__, []).append(fn.__code__)

        def counted(*args):
            calls[fn.__name__] += 1
            return inner(*args)

        return counted

    monkeypatch.setattr(torch, "compile", compile)
    return calls, codes


def training_model(kernel: str, group: int, muon: bool):
    return tiny_model(
        text_config={"num_hidden_layers": LAYERS}, ttt_layers=list(range(LAYERS)), lact_chunk_size=CHUNK,
        use_muon=muon, ttt_kernel=kernel, ttt_train_chunks_per_call=group,
    ).train()


def train_step(model, tokens: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of a training forward of text rows, and after its backward the gradients of the input embeddings and
    of every TTT parameter."""
    ids = torch.randint(10, 400, (batch, tokens), generator=torch.Generator().manual_seed(tokens))
    embedded = []

    def keep(module, args, out):
        out.retain_grad()
        embedded.append(out)

    hook = model.get_input_embeddings().register_forward_hook(keep)
    logits = model(input_ids=ids).logits
    hook.remove()
    logits.float().pow(2).mean().backward()
    names = model.config.ttt_layers
    # not the spatial convs: text rows pass through them
    ttt = {n: p.grad for n, p in model.named_parameters() if is_ttt_parameter(n, names) and ".conv_" not in n}
    assert len(ttt) == LAYERS * 14 and all(g is not None for g in ttt.values())
    return logits, embedded[0].grad, ttt


def assert_same(a, b, rtol: float) -> None:
    """Logits exactly; gradients within ``rtol`` of each tensor's largest entry."""
    assert torch.equal(a[0], b[0])
    for x, y in [(a[1], b[1]), *((a[2][n], b[2][n]) for n in b[2])]:
        assert (x - y).abs().max() <= rtol * y.abs().max(), (x - y).abs().max() / y.abs().max()


# 93 tokens: 11 whole chunks, each followed by a token (so each updates), then 5: two groups of 4, then the tail of
# 3 single chunks and a partial chunk through the per-chunk path
TAIL = CHUNK * (4 * 2 + 3) + 5


@pytest.mark.parametrize("muon", [False, True])
def test_grouped_steps_give_the_per_chunk_outputs_and_gradients(compiled, muon):
    """G = 4 against G = 1 on the compiled kernel, and against the reference kernel. The forward is bit-identical
    (the same ops in the same order). Gradients agree to fp32 rounding, measured as the largest difference over
    each tensor's largest entry: G = 4 vs G = 1 8e-8 (Muon off) and 5e-8 (on), asserted 1e-6 (one autograd node
    per group sums the gradients every chunk's step gives the shared inputs, such as the row norms, in another order
    than autograd's per-node accumulation); compiled vs reference 5.2e-7 with Muon off, asserted 3e-6. With Muon
    the compiled and the reference backward differ already at G = 1, by up to 0.6 of a gradient's largest entry
    here (Newton-Schulz runs in bf16 and its backward amplifies rounding: run in fp32, the difference measured
    4e-3), so only G = 4 vs G = 1 is asserted."""
    one = train_step(training_model("compiled", 1, muon), TAIL)
    four = train_step(training_model("compiled", 4, muon), TAIL)
    assert compiled[0]["flat_steps"] == LAYERS * 2
    assert_same(four, one, rtol=1e-6)
    reference = train_step(training_model("reference", 4, muon), TAIL)
    assert torch.equal(reference[0], one[0])  # the forward is the reference's, bit for bit
    if not muon:
        assert_same(four, reference, rtol=3e-6)


def test_the_reference_kernel_groups_by_looping_exactly(monkeypatch):
    """The memory's grouping on the reference kernel (whose steps loops over step): identical outputs, weights
    and pending tokens to G = 1, also when the previous call left pending tokens (cut=5: the first group must
    wait for the chunk they open) and on lengths that are no multiple of G chunks."""
    seen = Counter()
    steps = FastWeightKernel.steps
    monkeypatch.setattr(FastWeightKernel, "steps", lambda self, *a: seen.update([a[1].shape[1]]) or steps(self, *a))
    for cut, n in [(0, 100), (5, 100), (0, 96), (5, 20)]:
        results = []
        for group in (1, 3):
            weights, q, tokens = random_inputs(n=n)
            q.requires_grad_()
            kernel = FastWeightKernel.standalone(CHUNK, True, train_chunks_per_call=group)
            memory = FastWeightMemory(weights)
            outs = [memory.advance(q[:, :cut], tokens.slice(0, cut), kernel)] if cut else []
            outs.append(memory.advance(q[:, cut:], tokens.slice(cut), kernel))
            results.append((torch.cat(outs, 1), memory))
        (out1, mem1), (out3, mem3) = results
        assert torch.equal(out1, out3) and mem1.pending == mem3.pending
        assert all(torch.equal(a, b) for a, b in zip(mem1.weights[:3], mem3.weights[:3]))
    # groups of 3 chunks (24 tokens): 100 tokens from 0 -> 4 groups; from 5 (3 pending, 95 new) -> 3 groups after
    # the chunk the pending tokens open; 96 -> 3 groups (the last chunk is not followed: no update); 20 -> none
    assert seen == {3 * CHUNK: 4 + 3 + 3}


def test_compiled_calls_per_forward_drop_by_g_and_compile_once(compiled):
    """129 tokens: 16 whole chunks each followed by a token. G = 1 calls the compiled step 16 times per row of
    layers, G = 4 calls the 4-chunk step 4 times. Other lengths (other group counts, a tail of single chunks)
    reuse the compiled 4-chunk step: one fixed shape, so no recompiles; inference (no autograd) never groups."""
    calls, codes = compiled
    train_step(training_model("compiled", 1, True), CHUNK * 16 + 1)
    assert calls["flat_step"] == LAYERS * 16 and calls["flat_steps"] == 0
    calls.clear()
    model = training_model("compiled", 4, True)
    train_step(model, CHUNK * 16 + 1)
    assert calls["flat_steps"] == LAYERS * 4 and calls["flat_step"] == 0
    # two graphs: the first group of a row starts from zero momentum (no gradient), the others from the previous
    # one's; two kinds of input, so one compiled copy each (ops.compiled), one graph each
    compiles = lambda: [len(_debug_get_cache_entry_list(code)) for code in codes["flat_steps"]]  # noqa: E731
    variants = compiles()
    assert variants == [1, 1]
    for tokens, groups, singles in [(TAIL, 2, 3), (CHUNK * 25, 6, 0), (CHUNK * 30 + 3, 7, 2)]:
        calls.clear()
        train_step(model, tokens)
        assert (calls["flat_steps"], calls["flat_step"]) == (LAYERS * groups, LAYERS * singles)
    assert compiles() == variants  # other lengths and group counts: nothing new
    calls.clear()
    with torch.no_grad():
        model(input_ids=torch.randint(10, 400, (2, TAIL)))
    assert calls["flat_steps"] == 0 and calls["flat_step"] == LAYERS * 11
