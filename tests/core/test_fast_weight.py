"""The fast-weight operator against autograd and brute-force references."""

from dataclasses import replace

import pytest
import torch

from spatial_ttt.ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream, fast_weight_update, newton_schulz5, swiglu_apply
from spatial_ttt.ops.fast_weight import swiglu_descent


def random_weights(bh=3, d=8, dh=12):
    return FastWeights.start(torch.randn(bh, dh, d) / d**0.5, torch.randn(bh, d, dh) / dh**0.5, torch.randn(bh, dh, d) / d**0.5)


def random_tokens(bh=3, n=10, d=8, momentum=True):
    rates = [torch.rand(bh, n, 1) * 0.1 for _ in range(3)]
    m = torch.rand(bh, n, 1) if momentum else None
    return TokenStream(torch.randn(bh, n, d), torch.randn(bh, n, d), *rates, m)


def test_descent_is_negative_gradient_of_rate_weighted_dot_product_loss():
    weights, tokens = random_weights(), random_tokens()
    steps = swiglu_descent(weights, tokens.k, tokens.v, tokens.lr0, tokens.lr1, tokens.lr2)
    for j, rate in enumerate((tokens.lr0, tokens.lr1, tokens.lr2)):
        params = [w.clone().requires_grad_() for w in weights[:3]]
        out = swiglu_apply(FastWeights(*params, weights.norms, None), tokens.k)
        loss = -(rate * (out * tokens.v).sum(-1, keepdim=True)).sum()
        loss.backward()
        torch.testing.assert_close(steps[j], -params[j].grad, atol=1e-5, rtol=1e-5)


def test_swiglu_apply_matches_column_form():
    weights, x = random_weights(), torch.randn(3, 5, 8)
    expected = torch.stack([
        (weights.w1[b] @ (torch.nn.functional.silu(weights.w0[b] @ x[b].T) * (weights.w2[b] @ x[b].T))).T for b in range(3)
    ])
    torch.testing.assert_close(swiglu_apply(weights, x), expected)


def test_newton_schulz_orthogonalises_like_the_polar_factor():
    g = torch.randn(4, 16, 24)
    x = newton_schulz5(g)
    assert x.dtype == g.dtype and x.shape == g.shape
    singular = torch.linalg.svdvals(x.float())
    assert singular.min() > 0.6 and singular.max() < 1.25, singular  # quintic NS targets [0.7, 1.2]
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cosine = (x * (u @ vh)).sum() / (x.norm() * (u @ vh).norm())
    assert cosine > 0.97
    tall = newton_schulz5(g.transpose(-1, -2))  # rows > cols: computed on the transpose
    torch.testing.assert_close(tall, x.transpose(-1, -2), atol=2e-2, rtol=0)


def test_update_renormalises_rows_and_keeps_pre_muon_momentum():
    weights, tokens = random_weights(), random_tokens(n=6)
    first = fast_weight_update(weights, *tokens, use_muon=True)
    for w, norm in zip(first[:3], weights.norms):
        torch.testing.assert_close(w.norm(dim=-1, keepdim=True), norm, atol=1e-4, rtol=1e-4)
    raw = swiglu_descent(weights, tokens.k, tokens.v, tokens.lr0, tokens.lr1, tokens.lr2)
    for kept, step in zip(first.momentum, raw):  # first update: nothing to combine with yet
        torch.testing.assert_close(kept, step)
    second = fast_weight_update(first, *tokens, use_muon=False)
    beta = tokens.momentum.mean(dim=1, keepdim=True)
    raw2 = swiglu_descent(first, tokens.k, tokens.v, tokens.lr0, tokens.lr1, tokens.lr2)
    for kept, step, prev in zip(second.momentum, raw2, first.momentum):
        torch.testing.assert_close(kept, step + beta * prev)


def brute_force_scan(weights, q, tokens, chunk, use_muon):
    """Token by token: each token is answered by the weights after all complete chunks before it; a chunk
    updates only if some token follows it."""
    n, outputs = tokens.length, []
    for i in range(n):
        if i > 0 and i % chunk == 0:
            weights = fast_weight_update(weights, *tokens.slice(i - chunk, i), use_muon=use_muon)
        outputs.append(swiglu_apply(weights, q[:, i : i + 1]))
    return torch.cat(outputs, 1), weights


def scan(weights, q, tokens, chunk, use_muon):
    """One-shot prefill through the memory: outputs, final memory."""
    memory = FastWeightMemory(weights)
    out = memory.advance(q, tokens, FastWeightKernel.standalone(chunk, use_muon))
    return out, memory


def test_scan_matches_brute_force_and_applies_the_last_chunk_rule():
    for n, chunk in ((23, 5), (20, 5), (4, 5)):
        weights, tokens, q = random_weights(), random_tokens(n=n), torch.randn(3, n, 8)
        out, memory = scan(weights, q, tokens, chunk, use_muon=False)
        expected, expected_final = brute_force_scan(weights, q, tokens, chunk, use_muon=False)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(memory.weights.w1, expected_final.w1)
        assert memory.pending == (n - 1) % chunk + 1  # the last chunk (even a complete one) stays pending
        assert memory.recent.length == min(n, chunk)
        torch.testing.assert_close(memory.recent.k, tokens.k[:, -min(n, chunk):])


def test_scan_in_pieces_equals_one_scan():
    weights, tokens, q = random_weights(), random_tokens(n=31), torch.randn(3, 31, 8)
    whole, whole_memory = scan(weights, q, tokens, 6, use_muon=True)
    kernel = FastWeightKernel.standalone(6, True)
    memory, outputs, start = FastWeightMemory(weights), [], 0
    for end in (3, 12, 18, 19, 31):
        outputs.append(memory.advance(q[:, start:end], tokens.slice(start, end), kernel))
        start = end
    torch.testing.assert_close(torch.cat(outputs, 1), whole)
    torch.testing.assert_close(memory.weights.w0, whole_memory.weights.w0)
    assert memory.pending == whole_memory.pending


def spec_decode(weights, recent, q, tokens, chunk):
    """The spec's decode rule, literally: pending = the last C prompt tokens; per token: answer with the current
    weights, append to pending, and once C are pending update on the first C and drop them."""
    pending, outputs = recent, []
    for i in range(tokens.length):
        outputs.append(swiglu_apply(weights, q[:, i : i + 1]))
        pending = TokenStream.cat([pending, tokens.slice(i, i + 1)])
        if pending.length >= chunk:
            weights = fast_weight_update(weights, *pending.slice(0, chunk), use_muon=False)
            pending = pending.slice(chunk)
    return torch.cat(outputs, 1), weights


@pytest.mark.parametrize("prompt", [13, 15, 4])  # a partial last chunk, exactly 3 chunks, shorter than a chunk
def test_decode_follows_the_reference_decode_rule(prompt):
    weights, tokens, q = random_weights(), random_tokens(n=prompt + 12), torch.randn(3, prompt + 12, 8)
    kernel = FastWeightKernel.standalone(5, False)
    memory = FastWeightMemory(weights)
    memory.advance(q[:, :prompt], tokens.slice(0, prompt), kernel)
    memory.begin_decode()
    assert memory.pending == min(prompt, 5)
    at_once = replace(memory)  # a snapshot: advancing it leaves ``memory`` as it is
    many = at_once.advance(q[:, prompt:], tokens.slice(prompt), kernel, decoding=True)
    expected, expected_weights = spec_decode(memory.weights, memory.recent, q[:, prompt:], tokens.slice(prompt), 5)
    steps = [memory.advance(q[:, i : i + 1], tokens.slice(i, i + 1), kernel, decoding=True) for i in range(prompt, prompt + 12)]
    torch.testing.assert_close(torch.cat(steps, 1), expected)
    torch.testing.assert_close(memory.weights.w0, expected_weights.w0)
    torch.testing.assert_close(many, expected)  # several tokens in one call follow the same rule
    # the first decoded token is answered before the prompt's last chunk updates, unlike a longer prefill
    longer, _ = scan(weights, q[:, : prompt + 1], tokens.slice(0, prompt + 1), 5, use_muon=False)
    differs = (longer[:, -1] - steps[0][:, 0]).abs().max() > 1e-4
    assert differs == (prompt % 5 == 0)  # where the prompt fills its last chunk, the rules part
