"""Prefill of a long video on the real Qwen3-VL-2B architecture (random bf16 weights) on one GPU.

    PYTHONPATH=src python benchmarks/bench_prefill.py --frames 128 512 1024 --out prefill.json

Cases, each at 352x480 frames (165 LLM tokens per 2-frame temporal group, plus 5 timestamp tokens and
vision_start / vision_end around each group, 10 prompt tokens before and 20 after):
  ttt        Spatial-TTT in this library (21 TTT layers, 7 full-attention anchors), one prefill call;
  ttt_eager  the same with ttt_kernel="reference" (nothing compiled or graphed: the elementwise stages, conv and
             fast-weight step run eagerly): the A/B of the compiled kernels, in the same process;
  full_hf    the same architecture as plain Qwen3-VL: transformers' Qwen3VLForConditionalGeneration text model
             (SDPA attention), same positions and deepstack inputs;
  generate   Spatial-TTT through generate's path: prefill into a ModelState, then --new-tokens greedy tokens;
             prefill seconds, decode ms/token, peak memory, and the memory the state still holds afterwards;
  stream     Spatial-TTT ingesting the same video in pieces of --piece-frames frames (state carried), then the
             question;
  vision     the vision tower alone on the video's pixels (identical for all three cases).
The LLM cases start from precomputed visual features (random, the vision tower's output shapes: pooler output
and 3 deepstack levels); the vision tower is timed separately. Peak memory is torch.cuda.max_memory_allocated
during the call, weights of the model in question included (LLM + vision weights resident, as in deployment).
FLOPs are counted analytically (dense products + attention + fast-weight operator), see ``count_flops``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import types

import torch

from common import cuda_time, environment, matmul_peak, median, write_json

from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.models.modeling import SpatialTTTForConditionalGeneration
from spatial_ttt.models.positions import rope_positions
from spatial_ttt.ops.fast_weight import scan_flops

from common import IDS_2B as IDS, TEXT_2B as TEXT, VISION_2B as VISION  # noqa: E402
H_PATCH, W_PATCH = 352 // 16, 480 // 16  # 22 x 30 patches, 11 x 15 = 165 LLM tokens per group
PER_GROUP = (H_PATCH // 2) * (W_PATCH // 2)


def config(**over) -> SpatialTTTConfig:
    return SpatialTTTConfig(text_config=dict(TEXT), vision_config=dict(VISION), tie_word_embeddings=True, **IDS, **over)


def video_ids(groups: int, prefix: int = 10, suffix: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    text = lambda n: torch.randint(1000, 100000, (n,), generator=g).tolist()
    ids = text(prefix) if prefix else []
    for _ in range(groups):
        ids += text(5) + [IDS["vision_start_token_id"]] + [IDS["video_token_id"]] * PER_GROUP + [IDS["vision_end_token_id"]]
    ids += text(suffix) if suffix else []
    return torch.tensor([ids])


def fake_embed(self, input_ids, mm_token_type_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw):
    """SpatialTTTForConditionalGeneration.embed with the vision tower's output replaced by random features."""
    embeds = self.model.language_model.embed_tokens(input_ids)
    mask = mm_token_type_ids == 2
    n = int(mask.sum())
    if n == 0:
        return embeds, None, []
    feats = torch.randn(n, embeds.shape[-1], device=embeds.device, dtype=embeds.dtype)
    embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats)
    deep = [torch.randn_like(feats) for _ in VISION["deepstack_visual_indexes"]]
    return embeds, mask, deep


def count_flops(tokens: int, case: str, window: int = 2648, chunk: int = 2648) -> dict[str, float]:
    """Forward FLOPs of the LLM (2 per multiply-add): dense projections + MLP, attention score/value products
    (causal: half the square; window: the band), and the fast-weight operator in TTT layers."""
    h, inter, layers, kv = 2048, 6144, 28, 1024
    dense_per_layer = 2 * tokens * (h * h * 2 + h * kv * 2 + 3 * h * inter)
    causal = 2 * tokens * tokens * h  # 4 * S^2/2 * hd * heads
    band = 4 * tokens * min(window, tokens) * h - 2 * min(window, tokens) ** 2 * h
    if case == "full":
        return {"dense": layers * dense_per_layer, "attention": layers * causal, "fast_weight": 0.0,
                "total": layers * (dense_per_layer + causal)}
    ttt_layers = 21
    fw = scan_flops(4, tokens, 512, 512, chunk, True)["total"]
    attn = (layers - ttt_layers) * causal + ttt_layers * band
    dense = layers * dense_per_layer  # (TTT-specific projections are < 0.1%: left out)
    return {"dense": dense, "attention": attn, "fast_weight": ttt_layers * fw, "total": dense + attn + ttt_layers * fw}


def measure(fn, repeat: int) -> dict:
    gc.collect()
    torch.cuda.empty_cache()
    fn()  # warm-up (compilation, autotuning)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = cuda_time(fn, warmup=0, repeat=repeat)
    peak = torch.cuda.max_memory_allocated()
    return {"seconds": median(times), "all_seconds": times, "peak_gib": peak / 2**30, "resident_gib": base / 2**30}


def run_ttt(model, frames: int, repeat: int) -> dict:
    ids = video_ids(frames // 2).cuda()
    grid = torch.tensor([[frames // 2, H_PATCH, W_PATCH]], device="cuda")
    dummy = torch.zeros(1, 1, device="cuda")

    def fn():
        with torch.inference_mode():
            return model(input_ids=ids, pixel_values_videos=dummy, video_grid_thw=grid, logits_to_keep=1).logits

    return {"tokens": ids.shape[1], **measure(fn, repeat)}


def run_ttt_eager_branch(model, frames: int, repeat: int) -> dict:
    previous, model.config.ttt_kernel = model.config.ttt_kernel, "reference"
    try:
        return run_ttt(model, frames, repeat)
    finally:
        model.config.ttt_kernel = previous


def run_generate(model, frames: int, new_tokens: int) -> dict:
    from spatial_ttt.generation import decode

    ids = video_ids(frames // 2).cuda()
    grid = torch.tensor([[frames // 2, H_PATCH, W_PATCH]], device="cuda")
    dummy = torch.zeros(1, 1, device="cuda")

    def once():
        state = model.new_state(1)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():  # what generate uses
            logits = model(input_ids=ids, pixel_values_videos=dummy, video_grid_thw=grid, state=state, logits_to_keep=1).logits
            torch.cuda.synchronize()
            prefill = time.perf_counter() - start
            decode(model, state, logits[:, -1], 2)  # first decoded tokens include the update on the last chunk
            torch.cuda.synchronize()
            start = time.perf_counter()
            decode(model, state, logits[:, -1], new_tokens)
            torch.cuda.synchronize()
            per_token = (time.perf_counter() - start) / (new_tokens - 1)
        return state, prefill, per_token

    once()  # warm-up (compilation, graph capture)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    state, prefill, per_token = once()
    peak = torch.cuda.max_memory_allocated()
    gc.collect()
    held = torch.cuda.memory_allocated() - base
    del state
    return {"tokens": ids.shape[1], "seconds": prefill, "decode_ms_per_token": 1e3 * per_token, "peak_gib": peak / 2**30,
            "resident_gib": base / 2**30, "state_gib": held / 2**30}


def run_stream(model, frames: int, piece_frames: int, repeat: int) -> dict:
    pieces = [video_ids(0, prefix=10, suffix=0)]
    for _ in range(frames // piece_frames):
        pieces.append(video_ids(piece_frames // 2, prefix=0, suffix=0))
    pieces.append(video_ids(0, prefix=0, suffix=20))
    pieces = [p.cuda() for p in pieces]
    grid = torch.tensor([[piece_frames // 2, H_PATCH, W_PATCH]], device="cuda")
    dummy = torch.zeros(1, 1, device="cuda")

    def fn():
        with torch.inference_mode():
            state = model.new_state(1)
            for p in pieces:
                video = bool((p == IDS["video_token_id"]).any())
                logits = model(
                    input_ids=p, state=state, logits_to_keep=1,
                    pixel_values_videos=dummy if video else None, video_grid_thw=grid if video else None,
                ).logits
            return logits

    return {"tokens": sum(p.shape[1] for p in pieces), "pieces": len(pieces), "piece_frames": piece_frames, **measure(fn, repeat)}


def run_full_hf(frames: int, repeat: int) -> dict:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    cfg = Qwen3VLConfig(text_config=dict(TEXT), vision_config=dict(VISION), tie_word_embeddings=True, **IDS)
    cfg._attn_implementation = "sdpa"
    cfg.text_config._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen3VLForConditionalGeneration(cfg).eval()
    torch.set_default_dtype(torch.float32)
    ids = video_ids(frames // 2).cuda()
    types_ = torch.zeros_like(ids)
    types_[ids == IDS["video_token_id"]] = 2
    grid = torch.tensor([[frames // 2, H_PATCH, W_PATCH]])
    positions, _ = rope_positions(types_.cpu(), None, grid, 2, torch.zeros(1, dtype=torch.long))
    positions = positions.cuda()
    text = model.model.language_model
    mask = types_ == 2

    def fn():
        with torch.inference_mode():
            embeds = text.embed_tokens(ids)
            feats = torch.randn(int(mask.sum()), 2048, device="cuda", dtype=embeds.dtype)
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats)
            deep = [torch.randn_like(feats) for _ in range(3)]
            out = text(inputs_embeds=embeds, position_ids=positions, visual_pos_masks=mask, deepstack_visual_embeds=deep, use_cache=False)
            return model.lm_head(out.last_hidden_state[:, -1:])

    res = {"tokens": ids.shape[1], "attn_implementation": text.config._attn_implementation, **measure(fn, repeat)}
    del model, text
    return res


def run_vision(model, frames: int, repeat: int) -> dict:
    groups = frames // 2
    pixels = torch.randn(groups * H_PATCH * W_PATCH, 3 * 2 * 16 * 16, device="cuda", dtype=torch.bfloat16)
    grid = torch.tensor([[groups, H_PATCH, W_PATCH]], device="cuda")

    def fn():
        with torch.inference_mode():
            return model.encode_visual(pixels, grid)[0]  # the model's own path: config.vision_patches per tower call

    return {"patches": pixels.shape[0], **measure(fn, repeat)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--cases", nargs="+", default=["ttt", "full_hf", "stream", "vision"])
    parser.add_argument("--piece-frames", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="fast_weight_precision")
    parser.add_argument("--muon", action="store_true", help="Newton-Schulz at inference (the released eval: off)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--budget-s", type=float, default=1e9, help="skip remaining cases after this many seconds")
    args = parser.parse_args()
    t0 = time.time()
    torch._dynamo.config.cache_size_limit = 64
    env = environment()
    peak = matmul_peak()
    print(env, f"bf16 matmul peak {peak:.0f} TFLOP/s", flush=True)
    results = {"env": env, "bf16_matmul_peak_tflops": peak, "runs": []}

    def record(case, frames, fn):
        if time.time() - t0 > args.budget_s:
            print(f"skip {case} {frames}: time budget", flush=True)
            return
        try:
            r = fn()
        except Exception as error:
            r = {"error": repr(error)[:400]}
            torch.cuda.empty_cache()
        r.update(case=case, frames=frames)
        if "seconds" in r and case != "vision":
            f = count_flops(r["tokens"], "full" if case == "full_hf" else "ttt")
            r["tflop"] = f["total"] / 1e12
            r["flops"] = f
            r["tflops_per_s"] = f["total"] / r["seconds"] / 1e12
            r["pct_of_peak"] = 100 * r["tflops_per_s"] / peak
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
        print({k: v for k, v in r.items() if k not in ("flops",)}, flush=True)
        results["runs"].append(r)
        write_json(args.out, results)

    ours = [c for c in args.cases if c in ("ttt", "ttt_eager", "generate", "stream", "vision")]
    if ours:
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = SpatialTTTForConditionalGeneration(
                config(fast_weight_precision=args.precision, use_muon=args.muon)
            ).eval()
        torch.set_default_dtype(torch.float32)
        model.embed = types.MethodType(fake_embed, model)
        for frames in args.frames:
            if "ttt" in args.cases:
                record("ttt", frames, lambda: run_ttt(model, frames, args.repeat))
            if "ttt_eager" in args.cases:
                record("ttt_eager", frames, lambda: run_ttt_eager_branch(model, frames, args.repeat))
            if "generate" in args.cases:
                record("generate", frames, lambda: run_generate(model, frames, args.new_tokens))
            if "stream" in args.cases:
                record("stream", frames, lambda: run_stream(model, frames, args.piece_frames, args.repeat))
            if "vision" in args.cases:
                record("vision", frames, lambda: run_vision(model, frames, args.repeat))
        del model
        gc.collect()
        torch.cuda.empty_cache()
    if "full_hf" in args.cases:
        for frames in args.frames:
            record("full_hf", frames, lambda: run_full_hf(frames, args.repeat))
            gc.collect()
            torch.cuda.empty_cache()

    print("\nSUMMARY prefill (Qwen3-VL-2B architecture, random bf16 weights)")
    print(f"{'case':8s} {'frames':>6s} {'tokens':>7s} {'time s':>8s} {'peak GiB':>9s} {'tok/s':>9s} {'TFLOP/s':>8s} {'%peak':>6s}")
    for r in results["runs"]:
        if "seconds" not in r:
            print(f"{r['case']:8s} {r['frames']:6d} ERROR {r.get('error')}")
            continue
        print(f"{r['case']:8s} {r['frames']:6d} {r.get('tokens', r.get('patches', 0)):7d} {r['seconds']:8.3f} {r['peak_gib']:9.2f} "
              f"{r.get('tokens_per_s', 0):9.0f} {r.get('tflops_per_s', 0):8.1f} {r.get('pct_of_peak', 0):6.1f}")


if __name__ == "__main__":
    sys.exit(main())
