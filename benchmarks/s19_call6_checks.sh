#!/usr/bin/env bash
# Session 19's sixth device call (one H200): call 5's stream in 128-frame pieces ran 195.5 frames/s with "split"
# anchors against 284.7 with flash, split first in the process: the same with flash first; then flash against
# split at 1024 frames with 5 interleaved rounds (call 5's 3 rounds spread 2.87-3.81 s).
# bash benchmarks/s19_call6_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 170 python3 benchmarks/bench_e2e.py --models ours --precisions bf16 --frames 128 --decode-tokens 4 \
    --anchor-attention flash split --stream-frames 512 --piece-frames 128 --budget-s 160 \
    --out "$out/e2e.json" > "$out/e2e.log" 2>&1
grep -E "frames_per_s" "$out/e2e.log" | cut -c1-260
timeout 190 python3 benchmarks/prefill_ab.py --frames 1024 --variants now anchor_split --repeats 5 \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round|first_s" "$out/prefill_ab.log" | cut -c1-300
