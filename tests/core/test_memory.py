"""What a prefill leaves behind is compact, and the long-prompt memory savings do not change results."""

import pytest
import torch

from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def storage_bytes(t):
    return t.untyped_storage().nbytes()


def test_state_keeps_compact_copies_not_views_of_the_prompt():
    """Was: the memory kept a slice of the prompt's update inputs and the window cache a slice of its keys, which
    kept each layer's whole [S, d] tensors alive (38.5 GiB at 1024 frames on the 2B shape)."""
    model = tiny_model(lact_chunk_size=8, window_size=6)
    inputs = video_prompt(frames_groups=6, grid_hw=4)  # 50 tokens: longer than a chunk and twice the window
    state = model.new_state(1)
    with torch.no_grad():
        model(**inputs, state=state)
    for layer in state.layers:
        if layer.ttt is None:
            continue
        assert layer.ttt.recent.length == 8 and layer.ttt.pending == 2  # 50 = 6 chunks + 2
        for t in layer.ttt.recent:
            assert storage_bytes(t) == t.numel() * t.element_size()
        assert layer.kv.keys.shape[2] == 6
        assert storage_bytes(layer.kv.keys) == layer.kv.keys.numel() * layer.kv.keys.element_size()


def test_mlp_in_pieces_gives_the_same_logits():
    model = tiny_model()
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    with torch.no_grad():
        whole = model(**inputs).logits
        model.config.mlp_piece = 5
        pieces = model(**inputs).logits
    # the MLP's products over 5 rows instead of 50 may round differently in their last bit (BLAS blocking, which
    # depends on the thread count: 1.04e-6 apart on 2 threads), carried through 8 layers: within 16 fp32 steps of
    # the largest logit, where a wrong piece boundary would move logits by O(1)
    ulp = torch.finfo(torch.float32).eps * whole.abs().max().item()
    torch.testing.assert_close(pieces, whole, atol=16 * ulp, rtol=0)


def test_mlp_pieces_are_added_in_place_into_the_residual():
    """Was: the pieces' outputs were concatenated, then added (a second [S, hidden] tensor and the pieces alive at
    once). Now each piece's output is added into the layer's residual: the same sums, bit for bit, no new tensor."""
    layer = tiny_model(mlp_piece=5).model.language_model.layers[0]
    x = torch.randn(1, 23, layer.mlp.gate_proj.in_features)
    with torch.no_grad():
        concatenated = x + torch.cat([layer.mlp(layer.post_attention_layernorm(p)) for p in x.split(5, dim=1)], dim=1)
        residual = x.clone()
        out = layer.residual_mlp(residual)
    assert out is residual and torch.equal(out, concatenated)
    with torch.enable_grad():  # under autograd: whole, and the input left alone
        out = layer.residual_mlp(x)
    assert out is not x and torch.allclose(out, concatenated, atol=1e-6, rtol=0)


def test_a_state_filled_under_inference_mode_continues_under_no_grad():
    """Was: the anchor KV buffer, allocated under inference_mode, refused the next no_grad append ('Inplace update
    to inference tensor outside InferenceMode')."""
    model = tiny_model(lact_chunk_size=8)
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    logits = []
    for mode in (torch.inference_mode, torch.no_grad):
        state = model.new_state(1)
        with mode():
            model(**inputs, state=state)
        with torch.no_grad():
            logits.append(model(torch.tensor([[5]]), state=state).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=0, rtol=0)


def test_fast_weight_branch_in_pieces_gives_the_same_logits_and_state():
    model = tiny_model(lact_chunk_size=8, use_muon=False)
    inputs = video_prompt(frames_groups=6, grid_hw=4)  # 50 tokens: 7 chunks
    results = []
    for piece in (16384, 16):  # 16: pieces of 2 chunks
        model.config.branch_piece = piece
        state = model.new_state(1)
        with torch.no_grad():
            logits = model(**inputs, state=state).logits
            stateless = model(**inputs).logits
        results.append((logits, stateless, state.layers[0].ttt))
    (whole, whole_stateless, whole_memory), (pieces, pieces_stateless, pieces_memory) = results
    torch.testing.assert_close(pieces, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces_stateless, whole_stateless, atol=1e-6, rtol=0)
    torch.testing.assert_close(pieces_memory.weights.w0, whole_memory.weights.w0, atol=1e-6, rtol=0)
    assert pieces_memory.pending == whole_memory.pending == 2


def test_a_prefill_allocates_each_anchor_cache_once(monkeypatch):
    """Was: a long prompt grew each anchor cache GROWTH tokens at a time while its pieces went in (a new buffer and
    a copy of the cache per block, old and new buffer alive at once: 0.3 GiB per layer at 1024 frames on the 2B
    shape, and up to a block of slack: 0.27 GiB there). Now the prompt and the tokens decoding will feed are
    announced before the first piece, and each cache's first allocation holds them all, in whole KVCache.BLOCKs."""
    from spatial_ttt.state import KVCache

    monkeypatch.setattr(KVCache, "GROWTH", 16)
    monkeypatch.setattr(KVCache, "BLOCK", 8)
    allocations = []
    reserve = KVCache.reserve

    def counting(cache, length, like):
        before = cache.key_buffer
        reserve(cache, length, like)
        if cache.key_buffer is not before:
            allocations.append((id(cache), cache.key_buffer.shape[2]))

    monkeypatch.setattr(KVCache, "reserve", counting)
    # 71 tokens in pieces of 1-2 frame groups
    model = tiny_model(use_muon=False, lact_chunk_size=10, decode_kernel="graphed", prefill_piece=14)
    inputs = video_prompt(frames_groups=9, grid_hw=4)  # 71 tokens
    state = model.new_state(1)
    tokens = model.generate(**inputs, max_new_tokens=5, stop_token_ids=[], state=state)
    anchors = [layer.kv for layer in state.layers if layer.ttt is None]
    # 71 prompt tokens + 4 fed by the decode (the last new token is not fed): 75 -> 10 blocks of 8
    assert sorted(allocations) == sorted((id(kv), 80) for kv in anchors)
    assert state.num_tokens == 75 and all(kv.key_buffer.shape[2] == 80 for kv in anchors)
    monkeypatch.setattr(KVCache, "reserve", reserve)
    model.config.prefill_piece = 1000  # one forward: the same tokens
    assert model.generate(**inputs, max_new_tokens=5, stop_token_ids=[]).tolist() == tokens.tolist()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_state_holds_exactly_what_it_must_and_nothing_else_stays(precision):
    """After generate(max_new_tokens=1) on a prompt of N tokens, the state's storages (each counted once: a view
    keeps its whole base) are exactly benchmarks/memory_trace.expected_state_bytes, and everything the call
    allocated and still holds is that state plus the returned tokens and the vision tower's inputs for the
    call's grids, which the model keeps for later calls (at most 16 grids)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from memory_trace import TensorMemory, expected_state_bytes, model_kept_tensors, state_tensors, storage_bytes

    model = tiny_model(use_muon=False, lact_chunk_size=8, window_size=12, fast_weight_precision=precision)
    inputs = video_prompt(frames_groups=9, grid_hw=4)  # 71 tokens: 8 chunks + 7, window < N
    for piece in (1000, 14):  # one forward; pieces of 1-2 frame groups
        model.config.prefill_piece = piece
        model.model.grids.clear()
        with TensorMemory() as memory:
            state = model.new_state(1)
            tokens = model.generate(**inputs, max_new_tokens=1, stop_token_ids=[], state=state)
        kinds = state_tensors(state)
        held = {kind: storage_bytes(ts) for kind, ts in kinds.items()}
        # anchors: 71 tokens planned, one KVCache.BLOCK; KV elements fp32
        expected = expected_state_bytes(model.config, 1, 71, capacity=1024, kv_bytes=4)
        assert held == expected, (piece, held, expected)
        # 6 TTT layers, 4 heads, C = 8 tokens, d = 16: k (bf16 in the bf16 mode), v and 4 rates/gates (fp32)
        k_bytes = 2 if precision == "bf16" else 4
        assert expected["recent"] == 6 * 4 * 8 * (16 * k_bytes + (16 + 4) * 4)
        grids = memory.created(model_kept_tensors(model))
        assert grids > 0
        assert len(model.model.grids) == (1 if piece == 1000 else 2)  # 9 frame groups; pieces of 1 or 2
        assert memory.live == storage_bytes(t for ts in kinds.values() for t in ts) + storage_bytes([tokens]) + grids
        del state, kinds
        assert memory.live == storage_bytes([tokens]) + grids  # dropping the state frees everything else


def test_segments_waiting_for_the_next_piece_own_their_memory():
    """Was: the frame group a conv layer holds back until the next piece viewed the whole piece's embeddings,
    deepstack features and rope tables, and every segment carried its deepstack features up all the layers: at
    16k-token pieces on the 2B shape ~0.45 GB alive beyond what the next piece needs."""
    from spatial_ttt.streaming import feed, new_stream, segments_from_tokens

    model = tiny_model(use_muon=False, lact_chunk_size=8)
    inputs = video_prompt(frames_groups=6, grid_hw=4)
    stream = new_stream(model)
    with torch.no_grad():
        feed(model, stream, segments_from_tokens(model, stream, **inputs))
    levels = len(model.config.vision_config.deepstack_visual_indexes)
    waiting = [(index, segment) for index, queue in enumerate(stream.queues) for segment in queue]
    # each conv (TTT) layer holds back the last frame group and the text after it
    assert [(index, s.grid_hw is not None) for index, s in waiting] == [(i, g) for i in (0, 1, 2, 4, 5, 6) for g in (1, 0)]
    for index, segment in waiting:
        assert (segment.deepstack is None) == (segment.grid_hw is None or index >= levels)
        for t in (segment.hidden, segment.cos, segment.sin, *(segment.deepstack or ())):
            assert storage_bytes(t) == t.numel() * t.element_size(), index


def test_a_streamed_piece_drops_its_projections_before_the_fast_weight_branch(monkeypatch):
    """Was: the streaming engine handed a TTT layer its projections in a dict it kept, so q/k/v and the pre-conv
    fast-weight inputs stayed alive through the fast-weight branch (0.3 GB at 16k-token pieces, 2B shape)."""
    import weakref

    from spatial_ttt.layers.ttt import TTTAttention
    from spatial_ttt.streaming import feed, new_stream, segments_from_tokens

    project, branch = TTTAttention.project, TTTAttention.fast_weight_branch
    projections, alive_in_branch = [], []

    def recording_project(self, *args, **kwargs):
        projected = project(self, *args, **kwargs)
        projections.append([weakref.ref(t) for t in projected[:3]])  # attention q, k, v
        return projected

    def checking_branch(self, *args, **kwargs):
        alive_in_branch.append(any(ref() is not None for ref in projections[-1]))
        return branch(self, *args, **kwargs)

    monkeypatch.setattr(TTTAttention, "project", recording_project)
    monkeypatch.setattr(TTTAttention, "fast_weight_branch", checking_branch)
    model = tiny_model(use_muon=False, lact_chunk_size=8)
    stream = new_stream(model)
    with torch.no_grad():
        feed(model, stream, segments_from_tokens(model, stream, **video_prompt(frames_groups=6, grid_hw=4)), flush=True)
    assert len(alive_in_branch) == 6 and not any(alive_in_branch)  # every TTT layer, once


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kernels", [("reference", "eager"), ("graphed", "graphed")])
def test_bf16_mode_keeps_q_and_k_rows_in_bf16_with_the_same_numbers(monkeypatch, precision, kernels):
    """The bf16 mode's products round q and k to bf16, so keeping them in bf16 (the memory's pending rows, the
    branch's operator inputs, the static decoder's buffers) changes no number; v, which also enters the fp32
    product v * lr1, stays fp32. Compared with fp32 rows (what was kept before), through a prefill in pieces, the
    decode rule's updates on those rows, and a forward after; the fp32 mode keeps fp32 rows."""
    from spatial_ttt import static_decode
    from spatial_ttt.layers import ttt

    model = tiny_model(lact_chunk_size=8, fast_weight_precision=precision, ttt_kernel=kernels[0],
                       decode_kernel=kernels[1], prefill_piece=14)  # 71 tokens in pieces of 1-2 frame groups
    inputs = video_prompt(frames_groups=9, grid_hw=4)
    runs = []
    for rows in ("as configured", "fp32"):
        if rows == "fp32":
            for module in (ttt, static_decode):
                monkeypatch.setattr(module, "row_dtype", lambda precision: torch.float32)
        state = model.new_state(1)
        tokens = model.generate(**inputs, max_new_tokens=12, stop_token_ids=[], state=state)  # 11 fed: an update
        with torch.no_grad():
            logits = model(tokens[:, -1:], state=state).logits
        runs.append((tokens, logits, state))
    (tokens, logits, state), (tokens_fp32, logits_fp32, state_fp32) = runs
    assert torch.equal(tokens, tokens_fp32) and torch.equal(logits, logits_fp32)
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    for layer, layer_fp32 in zip(state.layers, state_fp32.layers):
        if layer.ttt is None:
            continue
        assert all(torch.equal(a, b) for a, b in zip(layer.ttt.weights[:3], layer_fp32.ttt.weights[:3]))
        recent, recent_fp32 = layer.ttt.recent, layer_fp32.ttt.recent
        assert recent.k.dtype == expected and recent.v.dtype == recent_fp32.k.dtype == torch.float32
        assert torch.equal(recent.k, recent_fp32.k.to(expected)) and torch.equal(recent.v, recent_fp32.v)


def test_rows_stay_fp32_under_autograd():
    """Training: a bf16 row used in three products would add up its gradients in bf16; the rows stay fp32."""
    model = tiny_model(lact_chunk_size=8, fast_weight_precision="bf16")
    state = model.new_state(1)
    model(**video_prompt(frames_groups=2, grid_hw=4), state=state).logits.sum().backward()
    assert all(layer.ttt.recent.k.dtype == torch.float32 for layer in state.layers if layer.ttt is not None)


def test_a_prefill_in_pieces_holds_one_piece_at_a_time(monkeypatch):
    """Was: while a piece ran (its vision tower first), the previous piece's segments (embeddings, deepstack
    features) and its output from the last layer were still alive, and within a piece the caller's list kept the
    embeddings alive up all the layers: the peak was two pieces' worth. Now each piece's tensors are dead before
    the next piece starts (checked on the base tensor of every input and output segment, a view keeps it alive,
    except what a segment waiting in a queue for the next piece owns)."""
    import weakref

    from spatial_ttt import streaming

    def base(t):
        return t if t._base is None else t._base

    recorded, alive = [], []
    feed, segments_from_tokens = streaming.feed, streaming.segments_from_tokens

    def recording_feed(model, stream, segments, flush=False):
        inputs = [base(t) for s in segments for t in (s.hidden, *(s.deepstack or ()))]
        out = feed(model, stream, segments, flush)
        recorded.extend(weakref.ref(t) for t in inputs + [base(s.hidden) for s in out])
        return out

    def checking_segments(model, stream, *args, **kwargs):
        waiting = {t.data_ptr() for queue in stream.queues for s in queue for t in (s.hidden, *(s.deepstack or ()))}
        alive.append(sum(ref() is not None and ref().data_ptr() not in waiting for ref in recorded))
        return segments_from_tokens(model, stream, *args, **kwargs)

    monkeypatch.setattr(streaming, "feed", recording_feed)
    monkeypatch.setattr(streaming, "segments_from_tokens", checking_segments)
    model = tiny_model(use_muon=False, lact_chunk_size=8, prefill_piece=14)  # 71 tokens in pieces of 1-2 groups
    model.generate(**video_prompt(frames_groups=9, grid_hw=4), max_new_tokens=1, stop_token_ids=[])
    assert len(alive) > 4 and len(recorded) > 20 and alive == [0] * len(alive)
