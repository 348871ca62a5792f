#!/usr/bin/env bash
# Session 23, fourth device call (one GPU), with this session's defaults (the patch embedding as cuBLAS GEMMs, the
# conv's text rows copied by a kernel of their own, 32-token stencil tiles): the user's path (bench_e2e: ours and
# plain Qwen3-VL in one process, 128 and 1024 frames, decode, a 1024-frame stream in 128-frame pieces), the two GPU
# tests of test_conv_triton.py that call 3's 180 s did not reach, and the tile against 16-token tiles in a prompt.
# bash benchmarks/s23_call4.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
bash benchmarks/e2e_user_path.sh "$out"
timeout 60 python3 -m pytest -q tests/gpu/test_conv_triton.py -k "autograd_on_cuda or other_than_the_current" \
    > "$out/gpu_tests.log" 2>&1
tail -2 "$out/gpu_tests.log"
timeout 90 python3 benchmarks/prefill_ab.py --frames 1024 --variants now tile_hw16 --repeats 3 --stages \
    --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-300
