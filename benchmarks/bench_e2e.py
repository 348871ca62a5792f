"""The user's path, end to end: pixels -> vision tower -> LLM -> generate, ours beside plain Qwen3-VL.

    PYTHONPATH=src:benchmarks python benchmarks/bench_e2e.py --out e2e.json     # one GPU, Qwen3-VL-2B shape
    PYTHONPATH=src:benchmarks python benchmarks/bench_e2e.py --tiny --out e2e.json   # CPU, seconds (tests)

Both models get random weights of the same shape (spec/official-model.md: Qwen3-VL-2B; ``--tiny``: the tiny test
shape) in bf16 (fp32 with --tiny), and the same prompt: 10 text tokens, then per 2-frame temporal group 5 timestamp
tokens, <|vision_start|>, 165 video tokens (352x480 frames), <|vision_end|>, then 20 question tokens; the same
normalised pixel patches go into both vision towers. Ours runs the released settings with Muon off, once per
``fast_weight_precision``; plain is transformers' Qwen3VLForConditionalGeneration (SDPA). Each is built, measured
and freed before the next, so a peak includes only that model's weights.

The video is uint8 frames, as a decoder leaves them; the library's processor (TorchVideoProcessor) writes ours'
pixels as SpatialTTTPipeline.inputs has it write them (``--pixels pipeline``: in the vision tower's dtype, pinned
host memory on CUDA; the model moves each piece to the GPU as its vision tower reaches it), or fp32 in pageable
host memory (``host``: the processor's default, the pipeline's before session 15), fp32 pinned (``pinned``) or fp32
on the device (``device``); a run records which in ``pixels``. Plain Qwen3-VL gets fp32 pixels on the device (its
own processor, transformers' torchvision one, is not timed).

Per video length, with the public API only (``generate`` below is the one adapter):
  processor_s      ours: the processor on the uint8 frames, writing the pixels as --pixels says (median of
                   --repeats calls after a first, processor_first_s, that allocates what the later ones reuse); a
                   user's pipeline runs it before generate: processor_s + prefill_s is that path's time to the
                   first token;
  prefill_s        generate(max_new_tokens=1): vision tower + LLM prefill + first token (after a warm-up call);
                   the median of --repeats timed calls (all of them in prefill_s_all; peak and state: the first);
  vision_s         the vision tower alone on the same pixels, as that model's generate calls it (part of prefill_s;
                   median of --repeats calls, vision_s_all);
  decode_ms        the decode phase of generate(1 + D) per further token, timed by itself (from the first new
                   token to the last: D forward steps; ours around spatial_ttt.generation.decode, plain from a
                   streamer's first new token): a difference of two generate calls carried the prefill's
                   run-to-run spread (+-0.2 s at 1024 frames, +-3 ms per token over 64 tokens);
  peak_gib         torch.cuda.max_memory_allocated during generate(1), weights included;
  state_gib        memory still allocated after generate(1) while its state is held (ours: the ModelState passed
                   in; plain: the returned past_key_values): what a conversation that continues keeps;
  state_by_kind_gib  ours: the state's storages by kind, each counted once; state_expected_gib: what it must hold
                   (benchmarks/memory_trace.expected_state_bytes: anchor KV at its planned capacity, window KV,
                   fast weights + momentum, the last chunk's update inputs);
  retained_gib     memory still allocated after the call once the state is dropped (should be 0: anything
                   else is a cache or a leak);
  warmup_s         the warm-up generate(1 + D) (compilation, autotuning, first graph captures), excluded above;
  new_tokens       the 1 + D tokens generated (greedy): the same wherever the pixels were;
  decode_kernel    ours: how the timed decode ran (config.decode_kernel, --decode-kernel: auto = graphed on CUDA);
  decode_setup_s   ours: the static decoder's per-decode build and graph capture (part of decode_ms);
  at_peak          with --trace-peak: one more generate(1)'s peak above its start and the bytes alive then, by
                   the spatial_ttt line that allocated them (GiB).
Then a long stream through StreamSession (ours): pieces of --piece-frames uint8 frames, each through the processor
as StreamSession.observe runs it, after a warm-up stream of 3 pieces (compilation excluded), frames/s over the
stream (processor included since session 15), and
per 128 frames the growth of allocated memory and of StreamSession.memory_bytes() by kind; a question at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.models.modeling import SpatialTTTForConditionalGeneration
from spatial_ttt.ops.attention_gpu import AFTER_CACHE
from spatial_ttt.static_decode import DECODE_KERNELS
from spatial_ttt.state import KVCache
from spatial_ttt.video.patches import TorchVideoProcessor, pixel_target

GIB = 2**30

from common import IDS_2B, TEXT_2B, VISION_2B, write_json  # noqa: E402  (the 2B shape, one copy for every benchmark)
from memory_trace import expected_state_bytes, state_tensors, storage_bytes  # noqa: E402


@dataclass(frozen=True)
class Shape:
    text: dict
    vision: dict
    ids: dict
    ttt: dict  # TTT settings beyond the released defaults
    frame_hw: tuple[int, int]
    dtype: torch.dtype

    @property
    def patch_grid(self) -> tuple[int, int]:
        p = self.vision["patch_size"]
        return self.frame_hw[0] // p, self.frame_hw[1] // p

    @property
    def tokens_per_group(self) -> int:
        h, w = self.patch_grid
        m = self.vision["spatial_merge_size"]
        return (h // m) * (w // m)


def shape_2b() -> Shape:
    return Shape(TEXT_2B, VISION_2B, IDS_2B, {}, (352, 480), torch.bfloat16)


def shape_tiny() -> Shape:
    from spatial_ttt.tiny import tiny_config

    cfg = tiny_config()
    text = {k: getattr(cfg.text_config, k) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_parameters")}
    vision = {k: getattr(cfg.vision_config, k) for k in (
        "depth", "hidden_size", "intermediate_size", "num_heads", "patch_size", "spatial_merge_size",
        "temporal_patch_size", "out_hidden_size", "num_position_embeddings", "deepstack_visual_indexes")}
    ids = {k: getattr(cfg, k) for k in IDS_2B}
    ttt = dict(ttt_layers=cfg.ttt_layers, lact_chunk_size=cfg.lact_chunk_size, window_size=cfg.window_size)
    return Shape(text, vision, ids, ttt, (64, 64), torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# inputs (built once on the CPU, identical for every model)


def prompt(
    shape: Shape, groups: int, prefix: int = 10, suffix: int = 20, seed: int = 0, pixels: bool = True
) -> dict[str, torch.Tensor]:
    """input_ids / mm_token_type_ids / attention_mask [1, S], pixel_values_videos [groups * h * w, 3 * 2 * p * p]
    (normalised pixels, as the processor writes them; left out if not ``pixels``), video_grid_thw [[groups, h, w]]."""
    g = torch.Generator().manual_seed(seed)
    low, high = 10, min(100000, shape.ids["image_token_id"])
    text = lambda n: torch.randint(low, high, (n,), generator=g).tolist()  # noqa: E731
    video = [shape.ids["vision_start_token_id"]] + [shape.ids["video_token_id"]] * shape.tokens_per_group
    ids = text(prefix)
    for _ in range(groups):
        ids += text(5) + video + [shape.ids["vision_end_token_id"]]
    ids += text(suffix)
    input_ids = torch.tensor([ids])
    h, w = shape.patch_grid
    p, tp = shape.vision["patch_size"], shape.vision["temporal_patch_size"]
    out = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        mm_token_type_ids=(input_ids == shape.ids["video_token_id"]).long() * 2,
    )
    if groups:
        if pixels:
            out["pixel_values_videos"] = torch.randn(groups * h * w, 3 * tp * p * p, generator=g).clamp(-2, 2)
        out["video_grid_thw"] = torch.tensor([[groups, h, w]])
    return out


def video_frames(shape: Shape, groups: int, seed: int = 0) -> torch.Tensor:
    """uint8 frames [2 * groups, H, W, 3], as a video decoder leaves them (random: the weights are random too)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2 * groups, *shape.frame_hw, 3), dtype=torch.uint8, generator=g)


def video_processor(shape: Shape) -> TorchVideoProcessor:
    """The library's processor for this shape (Qwen3-VL's normalisation)."""
    v = shape.vision
    return TorchVideoProcessor(v["patch_size"], v["temporal_patch_size"], v["spatial_merge_size"])


PIXELS = ("pipeline", "host", "pinned", "device")


def process(processor: TorchVideoProcessor, frames: torch.Tensor, pixels: str, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    """pixel_values_videos of ``frames`` where ``pixels`` says: "pipeline" as SpatialTTTPipeline.inputs and
    StreamSession write them (pixel_target: the vision tower's dtype, pinned on CUDA), "host" fp32 in pageable
    memory (the processor's default; the pipeline's before session 15), "pinned" fp32 pinned (CUDA), "device" fp32
    on the device."""
    target = (pixel_target(dtype, device) if pixels == "pipeline"
              else dict(pixel_dtype=torch.float32, pin_memory=pixels == "pinned" and device.type == "cuda"))
    out, _ = processor.patchify(frames, **target)
    return out.to(device) if pixels == "device" else out


def measure_processor(processor: TorchVideoProcessor, frames: torch.Tensor, pixels: str, dtype: torch.dtype,
                      device: torch.device, clock: "Clock", repeats: int) -> tuple[torch.Tensor, dict]:
    """The pixels, and processor_s: the median of ``repeats`` processor calls after a first one (processor_first_s:
    it allocates what later calls reuse, e.g. pinned blocks)."""
    seconds = [clock.run(lambda: process(processor, frames, pixels, dtype, device))[1] for _ in range(repeats + 1)]
    out = process(processor, frames, pixels, dtype, device)
    return out, dict(processor_s=statistics.median(seconds[1:]), processor_first_s=seconds[0])


# ----------------------------------------------------------------------------------------------------------------
# models and the one generate adapter


def build_ours(
    shape: Shape, device: torch.device, precision: str, decode_kernel: str = "auto", **settings: Any
) -> SpatialTTTForConditionalGeneration:
    """``settings``: further SpatialTTTConfig fields (e.g. prefill_piece)."""
    config = SpatialTTTConfig(
        text_config=dict(shape.text), vision_config=dict(shape.vision), tie_word_embeddings=True, **shape.ids,
        use_muon=False, fast_weight_precision=precision, decode_kernel=decode_kernel, **shape.ttt, **settings,
    )
    return _build(lambda: SpatialTTTForConditionalGeneration(config), shape.dtype, device)


def build_plain(shape: Shape, device: torch.device):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig(text_config=dict(shape.text), vision_config=dict(shape.vision), tie_word_embeddings=True, **shape.ids)
    for c in (config, config.text_config, config.vision_config):
        c._attn_implementation = "sdpa"
    return _build(lambda: Qwen3VLForConditionalGeneration(config), shape.dtype, device)


def _build(make, dtype: torch.dtype, device: torch.device):
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = make()
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def generate(model, inputs: dict[str, torch.Tensor], new_tokens: int, state: Any = None, streamer: Any = None):
    """New tokens, and the state the call leaves (ours: the ModelState given; plain: its past_key_values).
    ``streamer``: plain only (transformers' streamer hook)."""
    if isinstance(model, SpatialTTTForConditionalGeneration):
        return model.generate(**inputs, max_new_tokens=new_tokens, stop_token_ids=[], state=state), state
    out = model.generate(
        **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
        pad_token_id=0, return_dict_in_generate=True, streamer=streamer,
    )
    return out.sequences, out.past_key_values


# ----------------------------------------------------------------------------------------------------------------
# measuring


class DecodeTimer:
    """Seconds of the decode phase of generate calls made inside ``with timer.watch(model):`` (one per call): from
    the first new token to the last, synchronised. Ours: around :func:`spatial_ttt.generation.decode` (which
    ``generate`` calls by its module name). Plain: transformers' streamer hook, which sees the prompt, then each new
    token as it is chosen."""

    def __init__(self, clock: "Clock") -> None:
        self.clock, self.seconds = clock, []

    @contextlib.contextmanager
    def watch(self, ours: bool):
        from spatial_ttt import generation

        original = generation.decode

        def timed(*args, **kwargs):
            self.clock.sync()
            start = time.perf_counter()
            out = original(*args, **kwargs)
            self.clock.sync()
            self.seconds.append(time.perf_counter() - start)
            return out

        if ours:
            generation.decode = timed
        try:
            yield self
        finally:
            generation.decode = original

    def streamer(self):
        """For plain's generate: put() gets the prompt, then every new token; end() comes after the last."""
        timer, marks = self, []

        class Streamer:
            def put(self, value: torch.Tensor) -> None:
                marks.append(value)
                if len(marks) == 2:  # the first new token: the prefill is done
                    timer.clock.sync()
                    self.start = time.perf_counter()

            def end(self) -> None:
                timer.clock.sync()
                timer.seconds.append(time.perf_counter() - self.start)

        return Streamer()


class Clock:
    """Wall-clock seconds and CUDA memory (bytes) around a call; memory is 0 on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def allocated(self) -> int:
        return torch.cuda.memory_allocated() if self.cuda else 0

    def run(self, fn) -> tuple[Any, float, int]:
        """fn's result, its seconds and the peak allocated bytes during it."""
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        seconds = time.perf_counter() - start
        return result, seconds, torch.cuda.max_memory_allocated() if self.cuda else 0


def trace_peak(model, inputs: dict, clock: Clock, ours: bool) -> dict:
    """What is alive at the peak of one more generate(1), above its start, by the spatial_ttt line that allocated
    it (CUDA: the allocator's history; CPU: memory_trace.TensorMemory)."""
    from memory_trace import TensorMemory, cuda_peak

    call = lambda: generate(model, inputs, 1, model.new_state(1) if ours else None)  # noqa: E731
    gc.collect()
    try:
        if clock.cuda:
            _, at_peak = cuda_peak(call)
        else:
            with TensorMemory(attribute=True) as memory:
                call()
            at_peak = memory.at_peak
    except Exception as error:  # a diagnostic: its failure must not lose the run's numbers
        return dict(at_peak_error=repr(error)[:500])
    return dict(at_peak=dict(at_peak, gib=at_peak.get("bytes", 0) / GIB,
                             by_site={k: v / GIB for k, v in at_peak.get("by_site", {}).items()}))


def measure_generate(model, inputs: dict, decode_tokens: int, clock: Clock, ours: bool, repeats: int = 1) -> dict:
    # warm-up: compilation, autotuning, graph capture
    _, warmup_s, _ = clock.run(lambda: generate(model, inputs, 1 + decode_tokens))
    gc.collect()
    before = clock.allocated()
    state = model.new_state(1) if ours else None
    (_, state), prefill_s, peak = clock.run(lambda: generate(model, inputs, 1, state))
    prefills = [prefill_s]
    state_bytes = clock.allocated() - before
    by_kind = {kind: storage_bytes(ts) / GIB for kind, ts in state_tensors(state).items()} if ours else {}
    del state
    gc.collect()
    retained = clock.allocated() - before
    for _ in range(repeats - 1):  # more timed prefills, each on a fresh state dropped at once
        prefills.append(clock.run(lambda: generate(model, inputs, 1, model.new_state(1) if ours else None))[1])
    timer = DecodeTimer(clock)
    with timer.watch(ours):
        streamer = None if ours else timer.streamer()
        (sequences, _), total_s, _ = clock.run(lambda: generate(model, inputs, 1 + decode_tokens, streamer=streamer))
    (decode_s,) = timer.seconds
    visions = [clock.run(lambda: vision_tower(model, inputs, ours))[1] for _ in range(repeats)]
    result = dict(
        tokens=int(inputs["input_ids"].shape[1]),
        prefill_s=statistics.median(prefills),
        prefill_s_all=prefills,
        vision_s=statistics.median(visions),
        vision_s_all=visions,
        decode_ms=1e3 * decode_s / decode_tokens,
        generate_s=total_s,
        peak_gib=peak / GIB,
        state_gib=state_bytes / GIB,
        retained_gib=retained / GIB,
        warmup_s=warmup_s,
        new_tokens=sequences[0, -(1 + decode_tokens):].tolist(),
    )
    if ours:  # the state's storages by kind (each once), beside what it must hold (memory_trace.expected_state_bytes)
        capacity = -(-result["tokens"] // KVCache.BLOCK) * KVCache.BLOCK  # generate(1) plans the prompt
        element = model.get_input_embeddings().weight.element_size()
        expected = expected_state_bytes(model.config, 1, result["tokens"], capacity, element)
        result.update(state_by_kind_gib=by_kind, state_expected_gib={k: v / GIB for k, v in expected.items()})
    if ours:  # how the timed decode ran: the kernel, and its per-decode setup (buffers, graph capture; in decode_ms)
        last = model.static_decoding.last
        result.update(decode_kernel=last["kernel"], decode_setup_s=last.get("setup_s", 0.0))
    return result


@torch.no_grad()
def vision_tower(model, inputs: dict, ours: bool) -> None:
    """The vision tower alone on the prompt's pixels, as each model's generate runs it (part of prefill_s)."""
    pixels, grid = inputs["pixel_values_videos"], inputs["video_grid_thw"]
    if ours:
        model.encode_visual(pixels, grid)
    else:
        model.model.visual(pixels.to(model.model.visual.dtype), grid_thw=grid)


def measure_stream(model, shape: Shape, frames: int, piece_frames: int, clock: Clock, device: torch.device) -> dict:
    """StreamSession.observe_tokens in pieces of ``piece_frames`` uint8 frames, each through the processor as
    StreamSession.observe runs it (pixel_target; async copy from pinned memory), after a warm-up stream of 3 pieces;
    then one question, asked twice (the first is the first of its shapes in the process)."""
    from spatial_ttt.streaming import StreamSession

    processor, dtype = video_processor(shape), model.model.visual.dtype
    keys = ("input_ids", "video_grid_thw")
    to = lambda d: {k: v.to(device) for k, v in d.items() if k in keys}  # noqa: E731
    prefix = to(prompt(shape, 0, prefix=10, suffix=0))
    pieces = [(to(prompt(shape, piece_frames // 2, prefix=0, suffix=0, seed=1 + i, pixels=False)),
               video_frames(shape, piece_frames // 2, seed=1 + i)) for i in range(frames // piece_frames)]
    question = to(prompt(shape, 0, prefix=0, suffix=20))["input_ids"]

    def observe(session: StreamSession, piece: dict, clip: torch.Tensor) -> None:
        pixels = process(processor, clip, "pipeline", dtype, device).to(device, non_blocking=True)
        session.observe_tokens(**piece, pixel_values_videos=pixels)

    warm = StreamSession(model)  # warm-up on a throwaway stream: compilation, graph capture, the first window fill
    warm.observe_tokens(**prefix)
    for piece, clip in pieces[:3]:
        observe(warm, piece, clip)
    del warm
    gc.collect()
    base = clock.allocated()
    session = StreamSession(model)
    session.observe_tokens(**prefix)
    marks, fed = [], 0
    clock.sync()
    start = time.perf_counter()
    for piece, clip in pieces:
        observe(session, piece, clip)
        fed += piece_frames
        if fed % 128 == 0:
            clock.sync()
            marks.append(dict(frames=fed, seconds=time.perf_counter() - start,
                              allocated_gib=(clock.allocated() - base) / GIB, session_bytes=session.memory_bytes()))
    clock.sync()
    seconds = time.perf_counter() - start
    _, ask_s, peak = clock.run(lambda: session.ask_tokens(question, max_new_tokens=1))
    # the same question again: the first one paid for whatever its new shapes compile; a user's later questions not
    _, ask_again_s, peak_again = clock.run(lambda: session.ask_tokens(question, max_new_tokens=1))
    growth = {}
    if len(marks) >= 2:
        first, last, steps = marks[0], marks[-1], len(marks) - 1
        growth = {k: (last["session_bytes"][k] - first["session_bytes"][k]) / steps / GIB for k in last["session_bytes"]}
        growth["allocated"] = (last["allocated_gib"] - first["allocated_gib"]) / steps
    return dict(frames=fed, piece_frames=piece_frames, input="uint8 frames", seconds=seconds, frames_per_s=fed / seconds, ask_s=ask_s,
                ask_peak_gib=peak / GIB, ask_again_s=ask_again_s, ask_again_peak_gib=peak_again / GIB,
                gib_per_128_frames=growth, marks=marks)


# ----------------------------------------------------------------------------------------------------------------


def place(inputs: dict[str, torch.Tensor], device: torch.device, pixels: str,
          dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The inputs on ``device``, their pixels where ``pixels`` says: "device", "host" (pageable host memory, as the
    processor writes them by default), "pinned" (pinned host memory on CUDA) or "pipeline" (as SpatialTTTPipeline
    and StreamSession have the processor write them: in the vision tower's ``dtype``, pinned on CUDA)."""
    placed = {k: v.to(device) for k, v in inputs.items() if k != "pixel_values_videos" or pixels == "device"}
    if pixels != "device" and "pixel_values_videos" in inputs:
        host, pinned = inputs["pixel_values_videos"], pixels == "pinned" and device.type == "cuda"
        if pixels == "pipeline":
            target = pixel_target(dtype, device)
            host, pinned = host.to(target["pixel_dtype"]), target["pin_memory"]
        placed["pixel_values_videos"] = host.pin_memory() if pinned else host
    return placed


def environment(device: torch.device) -> dict:
    import platform

    import transformers

    env = dict(torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version(),
               device=str(device))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1), cuda=torch.version.cuda)
    return env


def ratios(runs: list[dict]) -> list[dict]:
    """ours / plain for each ours variant and length measured on both."""
    plain = {r["frames"]: r for r in runs if r["model"] == "plain" and "prefill_s" in r}
    out = []
    for r in runs:
        p = plain.get(r["frames"])
        if r["model"] == "plain" or p is None or "prefill_s" not in r:
            continue
        out.append(dict(model=r["model"], frames=r["frames"], pixels=r["pixels"],
                        **{k: r[k] / p[k] if p[k] else None for k in ("prefill_s", "decode_ms", "peak_gib")}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write (rewritten after every measurement)")
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU: checks the script, in seconds")
    parser.add_argument("--frames", type=int, nargs="+", help="video lengths (default 128 512 1024; tiny: 4 8)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="fast_weight_precision values of ours")
    parser.add_argument("--models", nargs="+", default=["ours", "plain"], choices=["ours", "plain"])
    parser.add_argument("--decode-tokens", type=int, help="tokens timed after the first (default 16; tiny: 2)")
    parser.add_argument("--stream-frames", type=int, help="length of the long stream (default 1024; tiny: 16)")
    parser.add_argument("--piece-frames", type=int, help="frames per observe step (default 32; tiny: 4)")
    parser.add_argument("--prefill-piece", type=int, default=SpatialTTTConfig.prefill_piece, help="ours: "
                        "config.prefill_piece (tokens per piece of a long video prompt's prefill)")
    parser.add_argument("--decode-kernel", default="auto", choices=DECODE_KERNELS,
                        help="config.decode_kernel of ours (auto: graphed on CUDA, eager on the CPU)")
    parser.add_argument("--anchor-attention", nargs="+", default=[SpatialTTTConfig.anchor_attention],
                        choices=AFTER_CACHE, help="config.anchor_attention values of ours, each timed in turn on the "
                        "same model (default: the library's)")
    parser.add_argument("--pixels", nargs="+", default=["pipeline"], choices=PIXELS,
                        help="ours: what the processor writes and where (pipeline: as SpatialTTTPipeline.inputs, "
                        "in the vision tower's dtype, pinned on CUDA; host: fp32 in pageable memory; pinned: fp32 "
                        "pinned; device: fp32 on the device); plain gets fp32 on the device")
    parser.add_argument("--trace-peak", action="store_true", help="one more generate(1) per run, recording what "
                        "is alive at its peak by allocating line (at_peak; slower)")
    parser.add_argument("--repeats", type=int, default=1, help="timed generate(1) calls (and vision tower calls) "
                        "per run; prefill_s and vision_s are their medians (single calls spread by ~0.1 s at 128 "
                        "frames and ~0.5 s at 1024 on an H100 between calls, session 14)")
    parser.add_argument("--budget-s", type=float, default=1e9, help="skip what is left after this many seconds")
    args = parser.parse_args()
    tiny = args.tiny
    shape = shape_tiny() if tiny else shape_2b()
    device = torch.device("cpu" if tiny or not torch.cuda.is_available() else "cuda")
    frames_list = args.frames or ([4, 8] if tiny else [128, 512, 1024])
    decode_tokens = args.decode_tokens or (2 if tiny else 16)
    stream_frames = args.stream_frames or (16 if tiny else 1024)
    piece_frames = args.piece_frames or (4 if tiny else 32)
    clock = Clock(device)
    t0 = time.time()
    results: dict[str, Any] = dict(env=environment(device), shape="tiny" if tiny else "qwen3-vl-2b", prefill_piece=args.prefill_piece,
                                   frame_hw=list(shape.frame_hw), decode_tokens=decode_tokens, runs=[], streams=[],
                                   ratios=[])
    inputs = {frames: prompt(shape, frames // 2, pixels=False) for frames in frames_list}
    videos = {frames: video_frames(shape, frames // 2) for frames in frames_list}
    processor = video_processor(shape)

    def over_budget(what: str) -> bool:
        if time.time() - t0 > args.budget_s:
            print(f"skip {what}: over --budget-s", flush=True)
            return True
        return False

    def record(key: str, entry: dict, fn) -> None:
        try:
            entry.update(fn())
        except Exception as error:  # one failing case must not lose the others' numbers
            entry["error"] = repr(error)[:500]
        print(json.dumps({k: v for k, v in entry.items() if k != "marks"}), flush=True)
        results[key].append(entry)
        results["ratios"] = ratios(results["runs"])
        write_json(args.out, results)

    variants = [(f"ours_{p}", p) for p in args.precisions] if "ours" in args.models else []
    variants += [("plain", None)] if "plain" in args.models else []
    for name, precision in variants:
        if over_budget(name):
            continue
        model = (build_ours(shape, device, precision, args.decode_kernel, prefill_piece=args.prefill_piece) if precision
                 else build_plain(shape, device))
        for anchor in args.anchor_attention if precision else [None]:
            label = dict(model=name, anchor_attention=anchor) if anchor else dict(model=name)
            if anchor:
                model.config.anchor_attention = anchor  # read when called
            for frames in frames_list:
                for pixels in args.pixels if precision else ["device"]:
                    if not over_budget(f"{name} {anchor or ''} {frames} {pixels}"):
                        placed = {k: v.to(device) for k, v in inputs[frames].items()}
                        placed["pixel_values_videos"], processed = measure_processor(
                            processor, videos[frames], pixels, model.model.visual.dtype, device, clock, args.repeats)
                        record("runs", dict(label, frames=frames, pixels=pixels),
                               lambda: (processed if precision else {})  # plain's own processor is not ours
                               | measure_generate(model, placed, decode_tokens, clock, precision is not None,
                                                  args.repeats)
                               | (trace_peak(model, placed, clock, precision is not None) if args.trace_peak else {}))
                        del placed
            if precision and not over_budget(f"{name} {anchor} stream"):
                record("streams", dict(label),
                       lambda: measure_stream(model, shape, stream_frames, piece_frames, clock, device))
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results["seconds"] = time.time() - t0
    write_json(args.out, results)
    for r in results["runs"]:
        if "processor_s" in r and "prefill_s" in r:
            print(f"{r['model']} at {r['frames']} frames ({r['pixels']} pixels): processor {r['processor_s']:.3f} s + "
                  f"prefill and first token {r['prefill_s']:.3f} s = {r['processor_s'] + r['prefill_s']:.3f} s")
    for r in results["ratios"]:
        print(f"{r['model']} ({r['pixels']} pixels) / plain at {r['frames']} frames: prefill x{r['prefill_s']:.2f}, "
              f"decode x{r['decode_ms']:.2f}, peak x{r['peak_gib'] or float('nan'):.2f}")


if __name__ == "__main__":
    main()
