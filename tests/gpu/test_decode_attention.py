"""The Triton decode attention (spatial_ttt.ops.decode_attention_triton) against the reference
decode_attention_reference, at the Qwen3-VL-2B shape, and inside graphed decoding on CUDA.

The kernel checks also run on the CPU under Triton's interpreter, on the small shapes (tests/core/
test_decode_attention_triton.py runs ``check_decode_attention`` in a process with TRITON_INTERPRET=1)."""

import pytest
import torch

from spatial_ttt.layers import attention
from spatial_ttt.layers.attention import decode_attention_reference
from spatial_ttt.tiny import tiny_model

from core.helpers import video_prompt

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (batch, heads, kv heads, buffer slots L, head dim, last, tile overrides)
SMALL = [
    (1, 4, 2, 50, 16, 49, {}),  # group 2, every slot visible, L not a multiple of the block (32)
    (2, 8, 2, 300, 32, 137, {}),  # group 4, batch 2, ``last`` inside the buffer and inside a block
    (2, 4, 2, 100, 16, 0, {}),  # only slot 0 visible: every split but the first is empty
    (1, 4, 4, 40, 16, 75, {}),  # group 1; ``last`` past the buffer (a full window ring): all 40 slots
    (1, 6, 2, 130, 16, 129, dict(block=16, splits=3)),  # group 3 (padded to 4), 3 splits (padded to 4)
    (2, 4, 2, 700, 64, 611, dict(splits=5)),  # several blocks per split, the last split partly masked
    (1, 16, 8, 70, 128, 66, {}),  # the 2B model's heads and head dim
]
SHAPE_2B = (1, 16, 8, 98_304, 128, 88_093, {})  # 1024 frames: an 88k-token prompt's cache in its grown buffer


def inputs_like(batch, heads, heads_kv, length, dim, last, dtype, device, seed=0):
    """q as attend_static makes it (a transposed view of [B, 1, H, hd]); the buffers' slots past ``last`` hold
    NaN: a kernel that reads them (or weighs them 0, as 0 * NaN is NaN) returns NaN."""
    g = torch.Generator().manual_seed(seed)
    q = 3 * torch.randn(batch, 1, heads, dim, generator=g)  # scores of several units: the softmax's max matters
    keys, values = torch.randn(2, batch, heads_kv, length, dim, generator=g)
    keys[:, :, last + 1 :] = values[:, :, last + 1 :] = float("nan")
    return q.to(device, dtype).transpose(1, 2), keys.to(device, dtype), values.to(device, dtype)


def check_decode_attention(shape, dtype, device, truncating=False):
    """The Triton kernel against decode_attention_reference of the visible slots in fp32. fp32: to fp32 rounding
    (another summation order). bf16: within half a bf16 ulp of that (a whole ulp where ``truncating``: Triton's
    interpreter truncates to bf16 instead of rounding), and equal to its rounding but for a few outputs near a
    rounding boundary: only the output's rounding differs (weights rounded to bf16 for the tensor cores' products
    with the values would give ~25% differing outputs)."""
    from spatial_ttt.ops.decode_attention_triton import decode_attention_triton

    *sizes, last, tile = shape
    q, keys, values = inputs_like(*sizes, last, dtype, device)
    where = torch.tensor([last], device=device)
    out = decode_attention_triton(q, keys, values, where, **tile)
    assert out.shape == q.shape and out.dtype == dtype
    seen = last + 1
    exact = decode_attention_reference(q.float(), keys[:, :, :seen].float(), values[:, :, :seen].float(), where)
    if dtype == torch.float32:
        torch.testing.assert_close(out, exact, rtol=1e-5, atol=1e-5)
    else:
        ulp = 2.0**-7 if truncating else 2.0**-8  # of |value|: bf16 keeps 8 significant bits
        assert bool(((out.float() - exact).abs() <= exact.abs() * ulp + 1e-5).all())
        rounded = (exact.view(torch.int32) & -(1 << 16)).view(torch.float32) if truncating else exact.to(dtype)
        assert (out.float() != rounded.float()).float().mean().item() < 1e-2
    return out


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SMALL + [SHAPE_2B])
def test_triton_decode_attention_equals_the_reference(shape, dtype):
    check_decode_attention(shape, dtype, "cuda")


@cuda
def test_the_length_changes_between_graph_replays_without_a_new_capture():
    """``last`` is read on the device: one captured launch serves every length."""
    from spatial_ttt.ops.decode_attention_triton import decode_attention_triton

    q, keys, values = inputs_like(1, 16, 8, 4096, 128, 4095, torch.bfloat16, "cuda")
    where = torch.tensor([0], device="cuda")
    decode_attention_triton(q, keys, values, where)  # compiles the kernels outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = decode_attention_triton(q, keys, values, where)
    for last in (0, 31, 1000, 4095):
        where.fill_(last)
        graph.replay()
        expected = decode_attention_reference(q, keys[:, :, : last + 1], values[:, :, : last + 1], where)
        torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)


@cuda
def test_decode_attention_picks_triton_on_cuda_and_the_reference_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "decode_attention_triton", lambda *args: calls.append("triton") or args[0])
    monkeypatch.setattr(attention, "decode_attention_reference", lambda *args: calls.append("reference") or args[0])
    for device in ("cuda", "cpu"):
        q, keys, values = inputs_like(1, 4, 2, 8, 16, 7, torch.float32, device)
        attention.decode_attention(q, keys, values, torch.tensor([7], device=device))
    assert calls == ["triton", "reference"]


@cuda
def test_graphed_decoding_with_the_triton_kernel_gives_the_eager_tokens():
    """The compiled, graph-captured step calls the Triton op (a torch.library.triton_op) with no graph break
    (fullgraph); the anchor layers attend over a buffer grown past the prompt, the TTT layers over their window
    ring (window 16: it wraps). fp32: greedy tokens as eager decoding's (SDPA over the cache), batch 2.
    (tests/gpu/test_decode_graph.py compares logits and the state left, in fp32 and bf16, with the same kernel.)"""
    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=16).cuda()
    inputs = {k: v.cuda() for k, v in video_prompt(frames_groups=2, grid_hw=4, batch=2).items()}
    tokens = {}
    for kind in ("eager", "graphed"):
        model.config.decode_kernel = kind
        tokens[kind] = model.generate(**inputs, max_new_tokens=24, state=model.new_state(2))
    assert model.static_decoding.last["kernel"] == "graphed" and model.static_decoding.last["captured"]
    assert tokens["graphed"].tolist() == tokens["eager"].tolist()
