#!/usr/bin/env bash
# Session 18's fifth device call (one H200, one job): ours and plain Qwen3-VL (transformers) in one process on the
# same inputs, 128 and 1024 frames, uint8 frames through the processor (bench_e2e.py), with this session's decode
# and first-question changes; session 16's same-process comparison ran beside a job on the other GPU.
# bash benchmarks/s18_call5_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 420 python3 benchmarks/bench_e2e.py --frames 128 1024 --precisions bf16 --models ours plain \
    --decode-tokens 16 --repeats 3 --budget-s 380 --out "$out/e2e.json" > "$out/e2e.log" 2>&1
tail -n 6 "$out/e2e.log" | cut -c1-600
