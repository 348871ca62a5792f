"""Where a long prefill's time goes: `generate(max_new_tokens=1)` at the Qwen3-VL-2B shape, by stage and by kernel;
with --stream, the same for a stream: `StreamSession.observe_tokens` in pieces of --piece-frames frames.

    PYTHONPATH=src:benchmarks python benchmarks/profile_prefill.py --frames 1024 --out profile.json
    PYTHONPATH=src:benchmarks python benchmarks/profile_prefill.py --stream --frames 256 --out profile_stream.json
    PYTHONPATH=src:benchmarks python benchmarks/profile_prefill.py --frames 128 1024 --idle --out profile.json
    PYTHONPATH=src:benchmarks python benchmarks/profile_prefill.py --tiny --out profile.json   # CPU, checks the script

Stages are timed with CUDA events through forward hooks on the model's modules (the vision tower, every decoder
layer's attention / TTT layer and MLP, the LM head), summed over the call; kernels come from torch.profiler (top
--top by CUDA time). Same inputs and model as bench_e2e.py (random weights, bf16, released settings, Muon off).
Several --frames run in one process, one after the other (later lengths reuse the compilations).

--idle adds a profiled call with host stages labelled (gpu_idle.py): the time the GPU sat idle inside the call,
charged to the innermost host stage running then (Python bookkeeping, norms, the chunk loop, ...), and the GPU's
busy time charged to the innermost host stage that launched each kernel (``device_by_stage``: which stage's work
the GPU spends its time on, where the CUDA-event stages cover only modules and a few methods).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

import gpu_idle
from bench_e2e import build_ours, prompt, shape_2b, shape_tiny

from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.ops import FastWeightMemory
from spatial_ttt.ops.attention_gpu import AFTER_CACHE
from spatial_ttt.state import ModelState
from spatial_ttt import streaming
from spatial_ttt.streaming import StreamSession


class StageTimer:
    """Summed time of module calls by stage name (CUDA events on a GPU, wall clock on the CPU); also the span from
    the first stage's start to the last one's end (``SPAN``) and what of it no top-level stage covers (``REST``:
    embedding, deepstack, norms and residuals outside the stages, copies, GPU idle)."""

    SPAN, REST = "span: first stage start to last stage end", "span not in a stage"

    def __init__(self, model, cuda: bool) -> None:
        self.cuda, self.open, self.totals = cuda, {}, defaultdict(float)
        self.calls: list = []
        self.first = self.last = None  # the first stage's start; the last one's end (CPU: the clock's)
        text = model.model.language_model
        stages = {"vision tower": [model.model.visual], "lm head": [model.lm_head]}
        for layer in text.layers:
            kind = "ttt layer: attention + fast-weight branch" if layer.is_ttt else "anchor layer: attention"
            stages.setdefault(kind, []).append(layer.self_attn)
            stages.setdefault("mlp", []).append(layer.mlp)
        self.undo = []  # what removes the hooks and wrappers
        for layer in text.layers:  # parts of a TTT layer that are methods, not modules
            if layer.is_ttt:
                self.wrap(layer.self_attn, "fast_weight_branch", "  of which: fast-weight branch (prologue, memory, epilogue)")
                self.wrap(layer.self_attn.attn_layer, "attend", "  of which: sliding-window attention")
        # the piecewise prefill and streams project a TTT layer's inputs and run its spatial conv before the
        # layer's call (streaming._conv_inputs): outside the attention stage above, so a stage of its own
        self.wrap(streaming, "_conv_inputs", "ttt layer: norm, projections, spatial conv (stream engine)")
        for name, modules in stages.items():
            for module in modules:
                self.undo.append(module.register_forward_pre_hook(lambda m, a, n=name: self.start(n, m)).remove)
                self.undo.append(module.register_forward_hook(lambda m, a, o, n=name: self.stop(n, m)).remove)

    def wrap(self, owner, method: str, name: str) -> None:
        def timing(original):
            def timed(*args, **kwargs):
                self.start(name, timed)
                out = original(*args, **kwargs)
                self.stop(name, timed)
                return out
            return timed

        self.undo.append(gpu_idle.replace(owner, method, timing))

    def start(self, name: str, module) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
        else:
            event = time.perf_counter()
        self.open[id(module)] = event
        self.first = event if self.first is None else self.first

    def stop(self, name: str, module) -> None:
        begin = self.open.pop(id(module))
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.calls.append((name, begin, end))
        else:
            self.last = time.perf_counter()
            self.totals[name] += self.last - begin

    def result(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
            for name, begin, end in self.calls:
                self.totals[name] += begin.elapsed_time(end) / 1e3
            span = self.first.elapsed_time(self.calls[-1][2]) / 1e3 if self.calls else 0.0
        else:
            span = self.last - self.first if self.first is not None else 0.0
        for undo in self.undo:
            undo()
        top = sum(seconds for name, seconds in self.totals.items() if not name.startswith(" "))
        return dict(self.totals) | {self.SPAN: span, self.REST: span - top}


def label_stages(model) -> gpu_idle.Labels:
    """Host stages of the user's path as profiler ranges (gpu_idle.py): modules by hooks, functions replaced."""
    labels = gpu_idle.Labels()
    text = model.model.language_model
    labels.module(model.model.visual, "stage: vision tower")
    labels.module(model.lm_head, "stage: lm head")
    labels.module(text.norm, "stage: final norm")
    for layer in text.layers:
        kind = "ttt" if layer.is_ttt else "anchor"
        labels.module(layer, f"stage: {kind} decoder layer (residuals, deepstack)")
        labels.module(layer.self_attn, f"stage: {kind} attention (rest)")
        labels.module(layer.mlp, "stage: mlp")
        labels.module(layer.input_layernorm, "stage: input norm")
        labels.module(layer.post_attention_layernorm, "stage: post-attention norm")
        attention = layer.self_attn.attn_layer if layer.is_ttt else layer.self_attn
        labels.module(attention.q_norm, "stage: q/k norm")
        labels.module(attention.k_norm, "stage: q/k norm")
        labels.function(attention, "attend", f"stage: {kind} attend (rope, cache, attention)")
        if layer.is_ttt:
            labels.function(layer.self_attn, "fast_weight_branch", "stage: fast-weight branch (rest)")
            labels.function(layer.self_attn, "project", "stage: ttt projections")
            labels.function(layer.self_attn, "conv_stencil", "stage: conv stencil choice")
    labels.function(text.kernel, "step", "stage: fast-weight kernel step")
    labels.function(FastWeightMemory, "advance", "stage: chunk loop (rest)")
    labels.function(ModelState, "plan", "stage: state plan")
    labels.function(model, "embed", "stage: embed (rest)")
    labels.function(model, "encode_visual", "stage: encode_visual (rest)")
    for owner in ("spatial_ttt.streaming", "spatial_ttt.models.modeling"):
        labels.function(owner, "rope_positions", "stage: rope positions")
    labels.function("spatial_ttt.models.modeling", "video_spans", "stage: video spans")
    for name in ("segments_from_tokens", "feed", "_advance_layer", "_conv_inputs", "_own", "final_logits"):
        labels.function("spatial_ttt.streaming", name, f"stage: streaming.{name} (rest)")
    labels.function("spatial_ttt.generation", "prefill", "stage: prefill (rest)")
    labels.function("spatial_ttt.generation", "decode", "stage: decode")
    return labels


def idle_profile(model, run, cuda: bool) -> dict:
    """One call with host stages labelled: GPU busy / idle seconds and idle seconds by host stage."""
    labels = label_stages(model)
    try:
        with torch.profiler.profile(activities=gpu_idle.activities(cuda)) as prof:
            with torch.profiler.record_function("stage: call (rest)"):  # until the GPU is done
                run()
                if cuda:
                    torch.cuda.synchronize()
    finally:
        labels.remove()
    kernels, stages, span = gpu_idle.profiled_intervals(prof, "stage: call (rest)")
    found = gpu_idle.idle_by_stage(kernels, stages, span)
    seconds = {k: round(found[k] / 1e6, 4) for k in ("total", "busy", "idle")}
    top = {name.removeprefix("stage: "): round(t / 1e6, 4) for name, t in found["idle_self"].items() if t >= 500}
    launched = gpu_idle.launches(prof)
    device = gpu_idle.device_by_stage(launched, stages)
    device["(device work linked to no host op)"] = sum(b - a for a, b in kernels) - sum(t for _, t in launched)
    device = {name.removeprefix("stage: "): round(t / 1e6, 4) for name, t in device.items() if abs(t) >= 500}
    return dict(**seconds, idle_by_stage=top, device_by_stage=device)


def profile_one(model, shape, device, cuda: bool, frames: int, args) -> dict:
    inputs = {k: v.to(device) for k, v in prompt(shape, frames // 2).items()}
    pieces: list[dict] = []
    run = lambda: model.generate(**inputs, max_new_tokens=1, stop_token_ids=[])  # noqa: E731
    if args.stream:
        piece_frames = 4 if args.tiny else args.piece_frames
        keys = ("input_ids", "pixel_values_videos", "video_grid_thw")
        pieces = [{k: v.to(device) for k, v in prompt(shape, piece_frames // 2, prefix=0, suffix=0, seed=i).items() if k in keys}
                  for i in range(frames // piece_frames)]

        def run() -> None:
            session = StreamSession(model)
            for piece in pieces:
                session.observe_tokens(**piece)
    run()  # warm-up: compilation, graph capture
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    timer = StageTimer(model, cuda)
    run()
    stages = timer.result()
    with torch.profiler.profile(activities=gpu_idle.activities(cuda)) as prof:
        run()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    kernels = [dict(name=e.key[:120], seconds=getattr(e, key) / 1e6, calls=e.count) for e in events[: args.top]]
    tokens = sum(int(p["input_ids"].shape[1]) for p in pieces) if args.stream else int(inputs["input_ids"].shape[1])
    result = dict(what="stream" if args.stream else "generate", frames=frames, tokens=tokens,
                  precision=args.precision, seconds=total, frames_per_s=frames / total,
                  device=torch.cuda.get_device_name(0) if cuda else "cpu",
                  stages_s={k: round(v, 4) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])})
    if args.idle:
        result["gpu_idle_s"] = idle_profile(model, run, cuda)
    print(json.dumps(result, indent=2), flush=True)
    for k in kernels:
        print(f"{k['seconds']*1e3:9.1f} ms {k['calls']:6d}x  {k['name']}")
    return dict(result, top_kernels=kernels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", help="default 1024 (8 with --tiny)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--stream", action="store_true", help="profile a stream instead of generate")
    parser.add_argument("--piece-frames", type=int, default=32)
    parser.add_argument("--idle", action="store_true", help="also GPU idle time by host stage (gpu_idle.py)")
    parser.add_argument("--anchor-attention", choices=AFTER_CACHE, default=SpatialTTTConfig.anchor_attention)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    shape = shape_tiny() if args.tiny else shape_2b()
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    model = build_ours(shape, device, args.precision, anchor_attention=args.anchor_attention)
    results = []
    for frames in args.frames or [8 if args.tiny else 1024]:
        results.append(profile_one(model, shape, device, cuda, frames, args))
        Path(args.out).write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2))


if __name__ == "__main__":
    main()
