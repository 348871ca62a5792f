#!/usr/bin/env bash
# Session 18's fourth device call (one H200): the spatial conv's Triton kernel compiled once for every frame count
# (call 3: 7 compilations, BLOCK_T = 1..7, at a stream's first question) and masked SDPA without cuDNN (1.3 s at its
# first call): their GPU tests, then a fresh process up to a question of another length (first_answer.py).
# bash benchmarks/s18_call4_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 200 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=5 tests/gpu/test_conv_triton.py \
    tests/gpu/test_gpu_paths.py -k "conv or stencil or masked or queries_after" > "$out/gpu_tests.log" 2>&1
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/gpu_tests.log" | tail -n 20
timeout 210 python3 benchmarks/first_answer.py --dynamic auto --child-timeout-s 200 --pieces 3 \
    --stop-after ask_other_length --out "$out/first_answer.json" > "$out/first_answer.log" 2>&1
python3 benchmarks/first_answer.py --show "$out/first_answer.json"
