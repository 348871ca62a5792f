#!/usr/bin/env bash
# Session 24, fourth device call (one GPU), with this session's defaults (the vision MLP's GELU in its GEMM's
# epilogue, the graphed step's norms resident): the user's path (bench_e2e: ours and plain Qwen3-VL in one
# process, 128 and 1024 frames, decode, a 1024-frame stream in 128-frame pieces), then the stream and host-pixel
# GPU tests (a stream's pieces against the one-shot prompt on CUDA) as far as the time goes.
# bash benchmarks/s24_call4.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
bash benchmarks/e2e_user_path.sh "$out"
timeout 150 python3 -m pytest -q tests/gpu/test_stream_device.py tests/gpu/test_host_pixels.py \
    > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
