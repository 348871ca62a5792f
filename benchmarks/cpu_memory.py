"""Peak and retained tensor memory of ``generate(max_new_tokens=1)`` on the CPU, at a reduced shape.

    PYTHONPATH=src:benchmarks python benchmarks/cpu_memory.py --frames 256 --piece-tokens 512 1024

The CPU keeps no allocator statistics, so :class:`memory_trace.TensorMemory` counts the storages created during
the call (the weights and the inputs exist before it); the CPU attention's mask blocks are cut small, as the GPU's
flash attention builds no mask. Per piece size: ``peak`` above the call's start,
``retained`` (still alive after the call while the state is held; of it ``kept_by_model``: the vision tower's
inputs per grid, which the model keeps for later calls), the state's own bytes (each storage once) by
kind beside what it must hold (:func:`spatial_ttt.state.ModelState.expected_bytes`), and the generated token
(the same for every piece size: prefill in pieces computes the numbers of one forward). The shape is the tiny test
model on 128x128 frames (16 tokens per frame group) with chunk and window of 64 tokens: the same parts as the 2B
shape at 1024 frames (anchor KV growing with the prompt, bounded TTT memory, piece activations), far smaller.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from functools import partial

import torch

from bench_e2e import build_ours, prompt, shape_tiny
from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.layers import attention
from spatial_ttt.state import KVCache

from memory_trace import TensorMemory, expected_state_bytes, model_kept_tensors, state_tensors, storage_bytes

MIB = 2**20


def measure(model, inputs: dict, piece_tokens: int) -> dict:
    model.config.prefill_piece = piece_tokens
    with TensorMemory(attribute=True) as memory:
        state = model.new_state(1)
        tokens = model.generate(**inputs, max_new_tokens=1, stop_token_ids=[], state=state)
        retained, kept = memory.live, memory.created(model_kept_tensors(model))
    kinds = state_tensors(state)
    return dict(
        piece_tokens=piece_tokens,
        prompt_tokens=int(inputs["input_ids"].shape[1]),
        peak_mib=memory.peak / MIB,
        retained_mib=retained / MIB,
        kept_by_model_mib=kept / MIB,
        state_mib=storage_bytes(t for ts in kinds.values() for t in ts) / MIB,
        state_by_kind_mib={kind: storage_bytes(ts) / MIB for kind, ts in kinds.items()},
        expected_mib={k: v / MIB for k, v in expected_state_bytes(model.config, 1, state.num_tokens, capacity(state), 4).items()},
        token=int(tokens[0, -1]),
        at_peak=memory.at_peak,
    )


def capacity(state) -> int:
    """Tokens the anchor KV buffers have room for."""
    return next(layer.kv.key_buffer.shape[2] for layer in state.layers if layer.ttt is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--piece-tokens", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--growth", type=int, default=512, help="KVCache.GROWTH (16384 at the 2B shape, where a "
                        "1024-frame prompt is 5.4 blocks; 512 here: this prompt is 5.8)")
    parser.add_argument("--mask-block", type=int, default=32, help="queries per masked attention call on the CPU")
    parser.add_argument("--block", type=int, default=32, help="KVCache.BLOCK (1024 at the 2B shape: GROWTH / 16)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="fast-weight precision")
    parser.add_argument("--mlp-piece", type=int, default=SpatialTTTConfig.mlp_piece, help="config.mlp_piece "
                        "(default 4096, at the 2B shape a quarter of a 16k-token prefill piece; scale it with "
                        "--piece-tokens to see its effect here)")
    parser.add_argument("--vision-patches", type=int, default=SpatialTTTConfig.vision_patches, help="config."
                        "vision_patches, patches per vision tower call (default 42,240: at the 2B shape 64 frame groups "
                        "of 352x480; results/peak_cpu used 768 = 12 groups here, scaled to the 8,192 of that run)")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(1)
    KVCache.GROWTH, KVCache.BLOCK = args.growth, args.block  # (an older KVCache has no BLOCK: harmless)
    # the GPU's flash attention builds no mask; the CPU's masked SDPA builds a [block, keys] one per query block:
    # small blocks keep it out of the peak (the same numbers: each query row is computed alone)
    attention.masked_attention = partial(attention.masked_attention, block=args.mask_block)
    shape = replace(shape_tiny(), frame_hw=(128, 128), ttt=dict(shape_tiny().ttt, lact_chunk_size=64, window_size=64))
    model = build_ours(shape, torch.device("cpu"), args.precision, mlp_piece=args.mlp_piece,
                       vision_patches=args.vision_patches)
    inputs = prompt(shape, args.frames // 2)
    weights = storage_bytes(model.parameters()) + storage_bytes(model.buffers())
    results = dict(growth=args.growth, block=args.block, mask_block=args.mask_block, precision=args.precision,
                   mlp_piece=args.mlp_piece, vision_patches=args.vision_patches, weights_mib=weights / MIB,
                   pixels_mib=storage_bytes([inputs["pixel_values_videos"]]) / MIB, runs=[])
    for piece in args.piece_tokens:
        results["runs"].append(measure(model, inputs, piece))
        print(json.dumps(results["runs"][-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}))


if __name__ == "__main__":
    main()
