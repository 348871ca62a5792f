"""Which settings cost or buy prefill time? The user's prefill (bench_e2e.py's model and prompt: random 2B-shape
weights, bf16, pixels as the pipeline writes them: bf16, pinned) timed under variants, in one process.

    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --out prefill_ab.json [--frames 1024 128]   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --tiny --out prefill_ab.json                 # CPU check

Variants (each: one generate(1) for its compilations, timed apart as ``first_s``: at a later --frames, what a
new length costs it; then --repeats rounds of one timed generate(1) per
variant, interleaved so that a machine's drift over the call falls on every variant alike (session 11 saw the same
code take 3.20 s and 3.69 s on two H100s, and one variant spread 3.39-4.54 s in one call); then the vision tower):
  now           the library as it is (vision blocks compiled, 42,240 patches = 64 frame groups per tower call)
  eager_vision  the vision tower's blocks eagerly (before session 7)
  rows_fp32     + q/k rows fp32 (before session 6)
  vision_32     the library with 32 frame groups per vision call (config.vision_patches = 21,120)
  vision_16     the library with 16 frame groups per vision call (10,560)
  anchor_flash  the library with config.anchor_attention = "flash" (SDPA's flash kernel, the diagonal
                bottom-right; the default before session 22: now "split", cuDNN tiles merged by LSE)
  piece_8k      the library with prefill pieces of 8,192 tokens (config.prefill_piece; default 16,384)
  piece_32k     the library with prefill pieces of 32,768 tokens (half the pieces: the host's work per piece and
                layer halves, the activations of a piece double)
  lean          piece_8k with 32 frame groups per vision call and MLP pieces of 2,048 (the memory settings down)
  eager_norms   the decoder's RMSNorms eagerly (before session 9: seven kernels each instead of one compiled)
  eager_rope    the attentions' rope eagerly (before session 10: chunk, neg, cat, two products and a sum for each
                of q and k, instead of one compiled function for both)
  weights_copied  the graphed fast-weight step copies the weights in and its outputs out at every chunk (before
                session 16: the weights now stay in the graph's buffers within a layer's call)
  before_s18    the spatial conv's Triton kernel launched as before session 18 (frames per program min(8, T), T,
                H and W specialised by Triton: a compilation per short piece's length) and masked SDPA calls free
                to take cuDNN (now: memory-efficient or math)
  before_s21    the stream engine's TTT conv inputs as before session 21 (a slice per segment, frame groups
                stacked, put back per group, segments joined: ~600 small ops per TTT layer and piece; now one
                gather and one scatter per input)
  before_s22    the stream engine's conv of a piece's frame groups as before session 22: the groups gathered into a
                volume padded with their neighbours, the Triton stencil over it, the result written back into a
                copy of the tokens (now the kernel reads and writes the groups' rows where they lie)
  conv3d_patches  the vision tower's patch embedding as transformers' Conv3d (cuDNN; before session 23: now cuBLAS
                GEMMs of 8,192 patches, vision_attention.GemmPatchEmbed)
  cloned_gaps   the stream engine's conv of a piece's frame groups into a clone of all its rows (before session 23:
                now the rows between the groups are copied by a kernel of their own, the groups' by the stencil)
  tile_hw16     the conv stencil with tiles of 16 tokens of a frame per program (before session 23: now 32)
  tile_hw32_t16 the conv stencil with runs of 16 output frames per program (default 8)
  gelu_apart    the vision blocks' MLP as transformers runs it (the linear, then the GELU as a pass of its own; before
                session 24: now the GELU in the GEMM's epilogue, vision_attention.linear_gelu_tanh)
  norms_copied  the graphed fast-weight step's norms copied into its buffers at every chunk (before session 24: now
                they stay there within a call, as the weights)
  split_keys_8k split anchors with key tiles of 8,192 (default 16,384): the keys that fill no key tile run flash
                (~275 TFLOP/s in session 23's profile, 121 ms at 1024 frames) and are half as many on average
  vision_per_call  the vision tower deriving its grid's inputs at every call and its blocks reading their frames
                off cu_seqlens, as before session 21 (now: computed once per grid,
                SpatialTTTForConditionalGeneration.grid_inputs)
  products_fp32 the fast-weight products in fp32 (config.fast_weight_precision = "fp32", the reference-exact mode
                the release evaluates with; the others run bf16 products)
  products_tf32 the same with TF32 tensor-core products allowed (torch.backends.cuda.matmul.allow_tf32, set by this
                script for this variant only; the library has no TF32 mode: issue 16 asks what one would buy). Its
                own kernel object, so that its CUDA graphs are captured with TF32 on, not replayed from fp32's
  stages_dynamic  the compiled stages (norms, rope, the branch's stages, vision blocks) with symbolic sizes from
                their first call (torch.compile dynamic=True) instead of static first (session 17's question: one
                compile per kind of input, no recompile at a stream's first question, at what cost in speed?)
With --stream FRAMES PIECE_FRAMES the timed call is a stream instead (``StreamSession.observe_tokens`` over FRAMES
frames in pieces of PIECE_FRAMES, pixels on the device, as profile_prefill.py --stream; a first stream per
variant, untimed, builds what it compiles and plans); in place of a token it records a checksum of what the TTT
layers hold of the last tokens (the sum of their update values x 1e3, rounded; the anchors below feed them).
With --clocks each timed call also records the GPU's SM clock, power and clock-limiting reasons (gpu_clocks.py,
NVML; nothing on the CPU), to tell whether a variant's heavier kernels lower the clocks for the work after them.
Peaks are per timed call (states of earlier calls dropped), weights included, as bench_e2e's. With --stages each
timed call's stages are also timed on the GPU (CUDA events, profile_prefill's stages): a variant's effect on its
stage stays readable where the whole call's time spreads with the machine (session 19: 2.87-3.81 s in one call).
Session 7's first run of this script (results/session7_h100/prefill_ab.json) compared session 6's memory settings instead; its
second and fourth (prefill_ab2/4.json) also had the decoder's norms, MLP and rope compiled ("now") against eager
("eager_text"): no time gained, so that was not kept (session 9's profile then put the eager norms alone at ~0.27 s
of kernel time at 1024 frames, so they are compiled again, by themselves: "eager_norms" is the A/B). Variants detach
the vision blocks or norms from the model's kernel, swap
the q/k row rule or the kernel's step and set the config's memory settings and anchor_attention, undone at the end: a diagnostic of
this script, not an API.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import weakref

import torch

import bench_e2e
from gpu_clocks import ClockSampler
from profile_prefill import StageTimer
import spatial_ttt.layers.attention as attention
import spatial_ttt.layers.ttt as ttt
import spatial_ttt.layers.vision_attention as vision_attention
import spatial_ttt.ops.attention_gpu as attention_gpu
import spatial_ttt.ops.conv_triton as conv_triton
import spatial_ttt.streaming as streaming
from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.models.modeling import SpatialTTTForConditionalGeneration
from spatial_ttt.layers.attention import Attention
from spatial_ttt.layers.norm import RMSNorm
from spatial_ttt.layers.spatial_conv import conv_frame_groups, conv_token_groups
from spatial_ttt.layers.ttt import Precomputed
from spatial_ttt.ops import FastWeightKernel, fast_weight_kernels
from spatial_ttt.streaming import StreamSession

VARIANTS = ("now", "eager_vision", "rows_fp32", "vision_32", "vision_16", "anchor_flash", "piece_8k", "piece_32k", "lean",
            "eager_norms", "eager_rope", "weights_copied", "stages_dynamic", "before_s18", "before_s21",
            "before_s22", "conv3d_patches", "cloned_gaps", "tile_hw16", "tile_hw32_t16",
            "split_keys_8k", "gelu_apart", "norms_copied", "vision_per_call", "products_fp32", "products_tf32")
ROWS = ttt.row_dtype
PATCHES = SpatialTTTConfig.vision_patches
PIECE, MLP_PIECE = SpatialTTTConfig.prefill_piece, SpatialTTTConfig.mlp_piece
ANCHOR = SpatialTTTConfig.anchor_attention
PRECISION = "bf16"  # the fast mode, which main builds the model in
TF32 = torch.backends.cuda.matmul.allow_tf32
_kernels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per model: its own kernel and the TF32 one
STEP = FastWeightKernel.step
GRAPH = FastWeightKernel._graph
COMPILED = FastWeightKernel.compiled
STEPS = (fast_weight_kernels.flat_step, fast_weight_kernels.flat_steps, fast_weight_kernels.resident_step)


def copied_step(self, weights, q, chunk, transient=False):
    return STEP(self, weights, q, chunk)  # never transient: copies in and out as before session 16


def dynamic_compiled(self, fn, variant=None, dynamic=None):
    return COMPILED(self, fn, variant, dynamic if fn in STEPS else True)  # stages symbolic from their first call


CONV_LAUNCH, MASKED = ttt.depthwise_conv3_triton, attention.MASKED_BACKENDS
ANY_BACKEND = [torch.nn.attention.SDPBackend.CUDNN_ATTENTION, torch.nn.attention.SDPBackend.FLASH_ATTENTION,
               torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION, torch.nn.attention.SDPBackend.MATH]
_specialised = []  # the kernel as Triton specialises it by default, made at first use (Triton only on CUDA)


def specialised_conv_launch(frames, weight):
    """The conv's launch before session 18: frames per program min(8, T), T, H and W specialised."""
    if not _specialised:
        _specialised.append(conv_triton.triton.jit(conv_triton._conv3_kernel.fn))
    kernel, conv_triton._conv3_kernel = conv_triton._conv3_kernel, _specialised[0]
    try:
        return CONV_LAUNCH(frames, weight, block_t=min(conv_triton.TILE["block_t"], frames.shape[-4] - 2))
    finally:
        conv_triton._conv3_kernel = kernel


CONV_INPUTS = streaming._conv_inputs
GROUPS_KERNEL = ttt.conv_token_groups_triton
GATHERED_GROUPS = functools.partial(conv_token_groups, stencil=conv_triton.depthwise_conv3_triton)  # before_s22


def sliced_conv_inputs(layer, stream, index, segments, hidden, following):
    """The stream engine's conv inputs as before session 21: a slice per segment, the frame groups stacked, the
    conv's rows put back per group and the segments joined again (~600 small ops per TTT layer and piece)."""
    attention = layer.self_attn
    normed = layer.input_layernorm(hidden)
    projected = attention.project(normed)
    bounds, offset = [], 0
    for segment in segments:
        bounds.append((offset, offset + segment.hidden.shape[1]))
        offset = bounds[-1][1]
    pre_conv = [[t[:, a:b] for a, b in bounds] for t in projected[3:]]
    after = None if following is None else attention.project(layer.input_layernorm(following.hidden))[3:]
    stencil = attention.conv_stencil(hidden)
    frame_groups = [i for i, s in enumerate(segments) if s.grid_hw is not None]
    grid, previous = segments[frame_groups[0]].grid_hw, stream.previous_group[index]
    features = [list(parts) for parts in pre_conv]
    for j, conv in enumerate(attention.convs):
        groups = torch.stack([pre_conv[j][i] for i in frame_groups], dim=1)
        out = conv_frame_groups(conv.weight, None if previous is None else previous[j], groups,
                                None if after is None else after[j], grid, stencil)
        for position, i in enumerate(frame_groups):
            features[j][i] = out[:, position]
    stream.previous_group[index] = tuple(pre_conv[j][frame_groups[-1]].clone() for j in range(3))
    conv_features = tuple(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0] for parts in features)
    return Precomputed(projected, conv_features, normed)


def cloned_gaps(tokens, starts, previous, following, grid_hw, weight):
    """conv_token_groups_triton as before session 23: the stencil's output written into a clone of every row."""
    out = tokens.clone()
    conv_triton.launch_groups(tokens, starts, previous, following, grid_hw, weight, out, {})
    return out


TILE = dict(conv_triton.TILE)
SPLIT = attention_gpu.attention_after_cache_split
GELU_EPILOGUE = vision_attention.gelu_epilogue_applies
GRID_INPUTS = SpatialTTTForConditionalGeneration.grid_inputs


def norms_copied(self, args, muon, precision, transient):
    """The graphed step handing back the caller's norms, as before session 24 (the next chunk copies them in)."""
    res, _ = GRAPH(self, args, muon, precision, transient)
    return res, tuple(args[i] for i in fast_weight_kernels.NORM_ARGS)


def grid_per_call(self, grid):
    """The vision tower's inputs as before session 21: grid_thw alone (the tower derives the rest at every call,
    and each block reads its frames off cu_seqlens: a synchronisation each on the GPU)."""
    return dict(grid_thw=torch.tensor([grid], device=self.model.visual.device))


def apply(variant: str, model) -> None:
    text = model.model.language_model
    if model not in _kernels:  # the first call sees the model's own kernel
        _kernels[model] = (text.kernel, FastWeightKernel(model.config))
    own, tf32 = _kernels[model]
    text.kernel = tf32 if variant == "products_tf32" else own
    for module in model.modules():  # the TTT layers hold the kernel too (the loop below sets the others')
        if isinstance(module, ttt.TTTAttention):
            module.kernel = text.kernel
    torch.backends.cuda.matmul.allow_tf32 = True if variant == "products_tf32" else TF32
    model.config.fast_weight_precision = "fp32" if variant in ("products_fp32", "products_tf32") else PRECISION
    eager = variant in ("eager_vision", "rows_fp32")
    for block in model.model.visual.blocks:  # a block without the model's kernel runs eagerly
        block.kernel = None if eager else text.kernel
    ttt.row_dtype = (lambda precision: torch.float32) if variant == "rows_fp32" else ROWS
    eager_kind = {"eager_norms": RMSNorm, "eager_rope": Attention}.get(variant)  # without the kernel: eager norm/rope
    for module in (m for m in model.modules() if isinstance(m, (RMSNorm, Attention))):
        module.kernel = None if eager_kind and isinstance(module, eager_kind) else text.kernel
    model.config.vision_patches = {"vision_32": PATCHES // 2, "vision_16": PATCHES // 4, "lean": PATCHES // 2}.get(
        variant, PATCHES)
    model.config.prefill_piece = {"piece_8k": PIECE // 2, "lean": PIECE // 2, "piece_32k": PIECE * 2}.get(variant, PIECE)
    model.config.mlp_piece = MLP_PIECE // 2 if variant == "lean" else MLP_PIECE
    model.config.anchor_attention = "flash" if variant == "anchor_flash" else ANCHOR
    FastWeightKernel.step = copied_step if variant == "weights_copied" else STEP
    FastWeightKernel._graph = norms_copied if variant == "norms_copied" else GRAPH
    FastWeightKernel.compiled = dynamic_compiled if variant == "stages_dynamic" else COMPILED
    ttt.depthwise_conv3_triton = specialised_conv_launch if variant == "before_s18" else CONV_LAUNCH
    attention.MASKED_BACKENDS = ANY_BACKEND if variant == "before_s18" else MASKED
    streaming._conv_inputs = sliced_conv_inputs if variant == "before_s21" else CONV_INPUTS
    ttt.conv_token_groups_triton = {"before_s22": GATHERED_GROUPS, "cloned_gaps": cloned_gaps}.get(variant, GROUPS_KERNEL)
    model.model.visual.patch_embed.kernel = None if variant == "conv3d_patches" else text.kernel
    conv_triton.TILE.update(TILE, **{"tile_hw16": dict(block_hw=16), "tile_hw32_t16": dict(block_t=16)}.get(
        variant, {}))
    vision_attention.gelu_epilogue_applies = (lambda block: False) if variant == "gelu_apart" else GELU_EPILOGUE
    attention_gpu.attention_after_cache_split = (
        functools.partial(SPLIT, key_tile=8192) if variant == "split_keys_8k" else SPLIT)
    SpatialTTTForConditionalGeneration.grid_inputs = grid_per_call if variant == "vision_per_call" else GRID_INPUTS


def restore(model) -> None:
    apply("now", model)


def summary(runs: list[tuple[int, float, float]], stages: list[dict[str, float]], clocks: list[dict]) -> dict:
    """(first token, seconds, peak bytes) per timed call, and its stage times and clocks if taken -> a variant's
    JSON entry."""
    seconds = [r[1] for r in runs]
    entry = dict(prefill_s=seconds, prefill_s_median=statistics.median(seconds),
                 peak_gib=max(r[2] for r in runs) / bench_e2e.GIB, token=runs[0][0])
    if stages:
        names = sorted({name for call in stages for name in call})
        entry["stages_s_median"] = {name: statistics.median(call.get(name, 0.0) for call in stages) for name in names}
    if clocks:
        entry["clocks"] = clocks
    return entry


def stream_call(model, pieces: list[dict]):
    """One stream over ``pieces``: (a checksum [1, 1] of the TTT layers' update values of the last tokens, the
    session), shaped as generate's result."""
    session = StreamSession(model)
    for piece in pieces:
        session.observe_tokens(**piece)
    total = sum(layer.ttt.recent.v.double().sum() for layer in session.stream.model.layers if layer.ttt is not None)
    return (total * 1e3).round().view(1, 1), session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="video lengths, each timed in turn")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--stages", action="store_true", help="also each timed call's stage times (CUDA events "
                        "around the vision tower, anchor / TTT attention, MLP: profile_prefill.StageTimer)")
    parser.add_argument("--stream", type=int, nargs=2, metavar=("FRAMES", "PIECE_FRAMES"), default=None,
                        help="time a stream of FRAMES frames in pieces of PIECE_FRAMES instead of generate(1)")
    parser.add_argument("--pixels", default="pipeline", choices=("pipeline", "host"), help="the prompt's pixels "
                        "as the pipeline has the processor write them (the vision tower's dtype, pinned on CUDA; "
                        "since session 21) or fp32 in pageable host memory (sessions 7-20)")
    parser.add_argument("--clocks", action="store_true", help="also each timed call's GPU clock, power and "
                        "clock-limiting reasons (NVML: gpu_clocks.ClockSampler)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    shape = bench_e2e.shape_tiny() if args.tiny else bench_e2e.shape_2b()
    model = bench_e2e.build_ours(shape, device, PRECISION)
    clock = bench_e2e.Clock(device)
    result = dict(environment=bench_e2e.environment(device), runs=[])
    if args.stream and args.frames:
        parser.error("--stream FRAMES PIECE_FRAMES replaces --frames")
    lengths = [args.stream[0]] if args.stream else args.frames or [8 if args.tiny else 1024]
    for frames in lengths:  # one process: later lengths reuse the compilations
        if args.stream:
            keys, piece_frames = ("input_ids", "pixel_values_videos", "video_grid_thw"), args.stream[1]
            pieces = [{k: v.to(device) for k, v in bench_e2e.prompt(shape, piece_frames // 2, prefix=0, suffix=0,
                                                                     seed=i).items() if k in keys}
                      for i in range(frames // piece_frames)]
            call = warm = lambda: stream_call(model, pieces)  # noqa: E731
            tokens = sum(int(p["input_ids"].shape[1]) for p in pieces)
        else:
            inputs = bench_e2e.place(bench_e2e.prompt(shape, frames // 2), device, args.pixels,
                                     model.model.visual.dtype)
            call = lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1))  # noqa: E731
            warm = lambda: bench_e2e.generate(model, inputs, 2)  # noqa: E731
            tokens = int(inputs["input_ids"].shape[1])
        _, warmup_s, _ = clock.run(warm)
        run = dict(frames=frames, tokens=tokens, what="stream" if args.stream else "generate",
                   pixels="device" if args.stream else args.pixels, warmup_s=warmup_s, variants={})
        result["runs"].append(run)
        for variant in args.variants:  # each variant's compilations first, timed apart (first_s)
            apply(variant, model)
            _, first_s, _ = clock.run(call)
            run["variants"][variant] = dict(first_s=first_s)
        timed: dict[str, list] = {variant: [] for variant in args.variants}
        stages: dict[str, list] = {variant: [] for variant in args.variants}
        clocks: dict[str, list] = {variant: [] for variant in args.variants}
        gpu = torch.cuda.current_device() if device.type == "cuda" else None
        for round_ in range(args.repeats):  # rounds of one call per variant: drift over the call hits all alike
            for variant in args.variants:
                apply(variant, model)
                timer = StageTimer(model, device.type == "cuda") if args.stages else None
                with ClockSampler(gpu) if args.clocks else contextlib.nullcontext() as sampler:
                    (answer, state), seconds, peak = clock.run(call)
                del state  # dropped before the next call, so each peak is its own
                timed[variant].append((int(answer[0, -1]), seconds, peak))
                if timer is not None:
                    stages[variant].append(timer.result())
                if sampler is not None:
                    clocks[variant].append(sampler.summary())
                run["variants"][variant] |= summary(timed[variant], stages[variant], clocks[variant])
            print(frames, f"round {round_ + 1}/{args.repeats}:",
                  {v: round(r[-1][1], 4) for v, r in timed.items()}, flush=True)
            bench_e2e.write_json(args.out, result)  # a call cut short keeps every finished round
        for variant in args.variants if not args.stream else []:
            apply(variant, model)
            _, run["variants"][variant]["vision_s"], _ = clock.run(lambda: bench_e2e.vision_tower(model, inputs, True))
            print(frames, variant, run["variants"][variant], flush=True)
        bench_e2e.write_json(args.out, result)
        restore(model)


if __name__ == "__main__":
    main()
