"""One compiled copy of a stage per kind of input: no code object runs out of dynamo's recompile limit, whatever
mix of views, batches, token counts and tensor kinds a model's callers bring."""

import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from spatial_ttt.ops.compiled import Compiled, input_kind
from spatial_ttt.streaming import StreamSession
from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt
from .test_streaming import pieces


def norm(x, weight):
    rows = x.float()
    return weight * (rows * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def cache_entries(compiled: Compiled) -> list[int]:
    return [len(_debug_get_cache_entry_list(f._torchdynamo_orig_callable.__code__)) for f in compiled.variants.values()]


def test_input_kind_tells_apart_what_dynamo_guards_on_and_nothing_else():
    base = torch.zeros(2, 50, 8)
    kind = input_kind
    assert kind(torch.zeros(1, 7, 8)) == kind(torch.zeros(1, 30, 8))  # new sizes: the same kind
    assert kind(base[:1, 5:9]) == kind(base[:1, 20:40])  # slices at offsets of 2 or more
    different = [torch.zeros(1, 7, 8), torch.zeros(2, 7, 8), torch.zeros(1, 1, 8), torch.zeros(1, 7, 8, 1),
                 base[:1, :7], base[:1, 5:12], base[:, 5:12], base[:, 5:12].detach(), torch.zeros(1, 7, 8).bfloat16(),
                 torch.zeros(1, 7, 8, requires_grad=True)]
    with torch.inference_mode():
        different.append(torch.zeros(1, 7, 8))
    assert len({kind(t) for t in different}) == len(different)
    assert kind(5) == kind(64) != kind(1) != kind(0)  # counts: 0, 1 or more
    assert kind(True) != kind(1) and kind(1e-6) != kind(1e-5) and kind(torch.float32) != kind(torch.bfloat16)
    assert kind((torch.zeros(3, 2), None)) == (kind(torch.zeros(4, 2)), None)


@torch._dynamo.config.patch(recompile_limit=2)  # (monkeypatch would delete the setting afterwards)
def test_every_kind_of_input_gets_its_own_copy_and_recompiles_at_most_once(monkeypatch):
    """One code object took all of these before: contiguous rows of two lengths (static, then dynamic), slices at
    offset 0 and beyond, one token, a batch of 2, a slice of it, a detached slice, inference tensors; past the
    limit a fullgraph function raises (dynamo's FailOnRecompileLimitHit). aot_eager stands in for inductor: the
    guards are dynamo's, and it is fast."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, **{**kw, "backend": "aot_eager"}))
    torch._dynamo.reset()
    stage = Compiled(norm)
    weight, big = torch.randn(8), torch.randn(2, 60, 8)
    inputs = [torch.randn(1, 3, 8), torch.randn(1, 9, 8), big[:1, :7], big[:1, 5:12], big[:1, 20:41],
              torch.randn(1, 1, 8), torch.randn(2, 7, 8), big[:, 3:9], big[:, 3:9].detach(), torch.randn(1, 11, 8)]
    for x in inputs:
        torch.testing.assert_close(stage(x, weight), norm(x, weight), atol=1e-6, rtol=1e-6)
    with torch.inference_mode():
        for x in (torch.randn(1, 5, 8), torch.randn(1, 6, 8)):
            torch.testing.assert_close(stage(x, weight), norm(x, weight), atol=1e-6, rtol=1e-6)
    assert len(stage.variants) == 8
    assert max(cache_entries(stage)) == 2  # the contiguous rows: static, then dynamic; the rest once


@torch._dynamo.config.patch(recompile_limit=2)
def test_a_model_streamed_with_one_then_two_streams_stays_within_the_recompile_limit(monkeypatch):
    """The user's path that hit the limit: the tiny model on the graphed kernel (what "auto" runs on CUDA; eager
    on the CPU) streamed with one stream, then with two (StreamSession(batch_size=2)), questions of two lengths.
    Before, the decoder's norm took every kind of input in one code object and raised at its 9th compile (limit
    8). aot_eager stands in for inductor."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, **{**kw, "backend": "aot_eager"}))
    torch._dynamo.reset()
    model = tiny_model(use_muon=False, lact_chunk_size=10, ttt_kernel="graphed", decode_kernel="eager")
    reference = tiny_model(use_muon=False, lact_chunk_size=10, decode_kernel="eager")
    for batch in (1, 2):
        inputs = video_prompt(frames_groups=6, grid_hw=4, batch=batch)
        video, suffix = pieces(inputs, [2, 3], groups=6)
        answers = []
        with torch.no_grad():
            for m in (model, reference):
                session = StreamSession(m, batch_size=batch)
                for piece in video:
                    session.observe_tokens(**piece)
                answers.append([session.ask_tokens(suffix, max_new_tokens=3), session.ask_tokens(suffix[:, :2], max_new_tokens=2)])
        assert all(torch.equal(a, b) for a, b in zip(*answers))  # same tokens as the reference kernel
    compiled = model.model.language_model.kernel._compiled.values()
    assert max(n for c in compiled for n in cache_entries(c)) <= 2
    assert sum(len(c.variants) for c in compiled) > len(compiled)  # several kinds did come
