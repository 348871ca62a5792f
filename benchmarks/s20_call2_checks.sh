#!/usr/bin/env bash
# Session 20's second device call (one H200): the GPU tests call 1 did not reach (its 200 s ran out in
# test_host_pixels), then test_gpu_paths.py (the attention paths changed in session 19).
# bash benchmarks/s20_call2_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 230 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=5 tests/gpu/test_host_pixels.py \
    tests/gpu/test_norm_gpu.py tests/gpu/test_rope_gpu.py tests/gpu/test_ttt_branch.py > "$out/gpu_tests_a.log" 2>&1
grep -E "FAILED|ERROR|passed|failed" "$out/gpu_tests_a.log" | tail -n 12 | cut -c1-300
timeout 330 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=5 tests/gpu/test_gpu_paths.py \
    > "$out/gpu_tests_b.log" 2>&1
grep -E "FAILED|ERROR|passed|failed" "$out/gpu_tests_b.log" | tail -n 12 | cut -c1-300
