"""The TTT branch's elementwise stages as plain functions (compiled on CUDA) against the branch as it was."""

import pytest
import torch
import torch.nn.functional as F

from spatial_ttt.layers.rope import apply_partial_rope
from spatial_ttt.layers.ttt import TTTAttention, branch_epilogue, branch_prologue, fast_weight_inputs
from spatial_ttt.ops import FastWeightMemory, TokenStream
from spatial_ttt.tiny import tiny_config


def legacy_project(layer, x):
    """TTTAttention.project before the split into plain functions (frozen copy, the oracle)."""
    q, k, v = layer.attn_layer.project(x)
    group = layer.num_heads // layer.num_kv_heads
    qf = q.flatten(2) * layer.q_scale + layer.q_offset
    kf = k.repeat_interleave(group, dim=2).flatten(2) * layer.k_scale + layer.k_offset
    vf = v.repeat_interleave(group, dim=2).flatten(2)
    return q, k, v, qf, kf, vf


def legacy_branch(self, x, qf, kf, vf, cos, sin, state, decoding):
    """TTTAttention.fast_weight_branch before the split into plain functions (frozen copy, the oracle)."""
    batch, length, _ = x.shape
    qf, kf, vf = (t.view(batch, length, self.nh, self.d).transpose(1, 2) for t in (qf, kf, vf))
    qf, kf = F.silu(qf), F.silu(kf)
    if not self.config.no_v_silu:
        vf = F.silu(vf)
    qf = qf / (qf.norm(dim=-1, keepdim=True) + 1e-5)
    kf = kf / (kf.norm(dim=-1, keepdim=True) + 1e-5)
    if not self.config.ttt_nope:
        qf, kf = apply_partial_rope(qf, cos, sin), apply_partial_rope(kf, cos, sin)

    def per_head(t):
        return t.transpose(1, 2).reshape(batch * self.nh, length, -1)

    rates = F.softplus(self.lr_proj(x).float() + self.lr_offset).view(batch, length, self.nh, 3)
    lr0, lr1, lr2 = (per_head(rates[..., j : j + 1]) for j in range(3))
    momentum = None
    if self.config.use_momentum:
        momentum = per_head(self.momentum_proj(x).float().view(batch, length, self.nh, 1))
    qf, kf, vf = (t.reshape(batch * self.nh, length, self.d).float() for t in (qf, kf, vf))
    tokens = TokenStream(kf, vf, lr0, lr1, lr2, momentum)
    out = FastWeightMemory(self.initial_weights(batch)).advance(qf, tokens, self.kernel, decoding)
    out = self.ttt_norm(out.view(batch, self.nh, length, self.d)).transpose(1, 2)
    gate = F.silu(self.ttt_scale_proj(x)).float().unsqueeze(-1)
    return (out * gate).flatten(2).to(x.dtype)


def make_layer(dtype, seed=0, **over):
    torch.manual_seed(seed)
    layer = TTTAttention(tiny_config(**{"lact_chunk_size": 8, **over})).to(dtype)
    with torch.no_grad():  # every parameter off its neutral init, so each one matters
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        layer.ttt_norm.weight.add_(torch.randn_like(layer.ttt_norm.weight) * 0.3)
    return layer


def inputs(layer, dtype, batch=2, length=21, seed=1):
    g = torch.Generator().manual_seed(seed)
    hidden = layer.config.text_config.hidden_size
    x = torch.randn(batch, length, hidden, generator=g).to(dtype)
    angles = torch.randn(batch, length, layer.head_dim, generator=g)
    return x, angles.cos().to(dtype), angles.sin().to(dtype)


CASES = [
    dict(),  # released settings: momentum, v silu, rope (tiny: d == head_dim, full rope)
    dict(num_lact_heads=2),  # d = 32 > head_dim 16: partial rope
    dict(num_lact_heads=2, use_momentum=False, no_v_silu=True),
    dict(ttt_nope=True, use_muon=False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("over", CASES)
def test_branch_functions_equal_the_previous_branch_exactly(dtype, over):
    layer = make_layer(dtype, **over)
    x, cos, sin = inputs(layer, dtype)
    assert layer.kernel.fused(branch_prologue, x) is branch_prologue  # CPU, kernel "auto": the reference
    with torch.no_grad():
        new_p, old_p = layer.project(x), legacy_project(layer, x)
        for a, b in zip(new_p, old_p):
            assert a.dtype == b.dtype and torch.equal(a, b)
        qf, kf, vf = new_p[3:]
        new = layer.fast_weight_branch(x, qf, kf, vf, cos, sin, None, False)
        old = legacy_branch(layer, x, qf, kf, vf, cos, sin, None, False)
    assert new.dtype == old.dtype == dtype and torch.equal(new, old)


def test_branch_gradients_equal_the_previous_branch():
    layer = make_layer(torch.float32, num_lact_heads=2)
    x, cos, sin = inputs(layer, torch.float32)
    x.requires_grad_(True)
    grads = []
    for branch in (lambda *a: layer.fast_weight_branch(*a), lambda *a: legacy_branch(layer, *a)):
        layer.zero_grad()
        x.grad = None
        qf, kf, vf = layer.project(x)[3:]
        branch(x, qf, kf, vf, cos, sin, None, False).square().sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in layer.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 5
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_branch_functions_trace_as_one_graph_each():
    """What CUDA runs: torch.compile(fullgraph=True) of the same functions, here with the aot_eager backend
    (no C compiler needed) and autograd; two lengths exercise the dynamic-shape recompile."""
    layer = make_layer(torch.float32, num_lact_heads=2)
    compiled = {f: torch.compile(f, fullgraph=True, backend="aot_eager") for f in (fast_weight_inputs, branch_prologue, branch_epilogue)}
    for length in (21, 9):
        x, cos, sin = inputs(layer, torch.float32, length=length)
        q, k, v = layer.attn_layer.project(x)
        args = (q, k, v, layer.q_scale, layer.q_offset, layer.k_scale, layer.k_offset, 2)
        for a, b in zip(compiled[fast_weight_inputs](*args), fast_weight_inputs(*args)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        qf, kf, vf = fast_weight_inputs(*args)
        pro = (qf, kf, vf, cos, sin, layer.lr_proj(x), layer.momentum_proj(x), 2, layer.lr_offset, True, True)
        for a, b in zip(compiled[branch_prologue](*pro), branch_prologue(*pro)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        out = torch.randn(2 * 2, length, 32, requires_grad=True)
        epi = (out, layer.ttt_norm.weight, 1e-5, layer.ttt_scale_proj(x), 2, torch.float32)
        y_c, y = compiled[branch_epilogue](*epi), branch_epilogue(*epi)
        torch.testing.assert_close(y_c, y, rtol=1e-6, atol=1e-6)
        (g_c,) = torch.autograd.grad(y_c.sum(), out)
        (g,) = torch.autograd.grad(y.sum(), out)
        torch.testing.assert_close(g_c, g, rtol=1e-6, atol=1e-6)


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_branch_on_cuda_matches_eager():
    """Each compiled stage against the same function run eagerly on CUDA (bf16 model: the compiled kernels skip
    the intermediate bf16 roundings, so they agree to bf16 accuracy, not bitwise), and the whole branch with the
    operator in apply-only mode (one chunk longer than the sequence: no Muon step to amplify rounding)."""
    layer = make_layer(torch.bfloat16, num_lact_heads=2, lact_chunk_size=64).cuda()
    x, cos, sin = (t.cuda() for t in inputs(layer, torch.bfloat16, length=40))
    dispatch = layer.kernel.fused
    assert dispatch(branch_prologue, x) is not branch_prologue  # CUDA, kernel "auto": compiled
    with torch.no_grad():
        q, k, v = layer.attn_layer.project(x)
        args = (q, k, v, layer.q_scale, layer.q_offset, layer.k_scale, layer.k_offset, 2)
        for a, b in zip(dispatch(fast_weight_inputs, x)(*args), fast_weight_inputs(*args)):
            assert rel(a, b) < 1e-2
        qf, kf, vf = fast_weight_inputs(*args)
        pro = (qf, kf, vf, cos, sin, layer.lr_proj(x), layer.momentum_proj(x), 2, layer.lr_offset, True, True)
        for a, b in zip(dispatch(branch_prologue, x)(*pro), branch_prologue(*pro)):
            assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape and rel(a, b) < 1e-2
        out = torch.randn(4, 40, 32, device="cuda")
        epi = (out, layer.ttt_norm.weight, 1e-5, layer.ttt_scale_proj(x), 2, torch.bfloat16)
        a, b = dispatch(branch_epilogue, x)(*epi), branch_epilogue(*epi)
        assert a.dtype == b.dtype == torch.bfloat16 and rel(a, b) < 1e-2
        outs = []
        for kind in ("reference", "compiled"):
            layer.config.ttt_kernel = kind
            outs.append(layer.fast_weight_branch(x, qf, kf, vf, cos, sin, None, False))
    assert rel(outs[1], outs[0]) < 2e-2
