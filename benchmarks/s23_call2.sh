#!/usr/bin/env bash
# Session 23, second device call (one GPU): the patch embedding as cuBLAS GEMMs (vision_attention.GemmPatchEmbed) and
# the stream engine's conv without its clone of every row (conv_triton._copy_gaps_kernel), first their GPU tests, then
# a 1024-frame prompt timed against each one's former path and the stencil at 32-token tiles (prefill_ab variants
# conv3d_patches, cloned_gaps, tile_hw32; interleaved rounds, one process), and the stencil's tiles alone (bench_conv).
# bash benchmarks/s23_call2.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 150 python3 -m pytest -q -x tests/gpu/test_conv_triton.py tests/gpu/test_stream_device.py \
    tests/gpu/test_host_pixels.py tests/core/test_vision_attention.py > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
timeout 270 python3 benchmarks/prefill_ab.py --frames 1024 --variants now conv3d_patches cloned_gaps tile_hw32 \
    --repeats 4 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-300
timeout 90 python3 benchmarks/bench_conv.py --repeat 30 --out "$out/conv.json" > "$out/conv.log" 2>&1
tail -n 3 "$out/conv.log" | cut -c1-160
