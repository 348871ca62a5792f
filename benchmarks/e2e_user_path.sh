#!/usr/bin/env bash
# The user's path as sessions 22-24 time it in one device call (~4 minutes on an H200): bench_e2e, ours (bf16) and
# plain Qwen3-VL in one process at 128 and 1024 frames (pipeline pixels), 16 decoded tokens, a 1024-frame stream of
# uint8 frames in 128-frame pieces; three timed calls each. The device-call scripts (s22_call3.sh, s23_call4.sh,
# s24_call1.sh, s24_call4.sh) run it first.
# bash benchmarks/e2e_user_path.sh OUT_DIR  (PYTHONPATH: src and benchmarks)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 300 python3 benchmarks/bench_e2e.py --models ours plain --precisions bf16 --frames 128 1024 \
    --decode-tokens 16 --stream-frames 1024 --piece-frames 128 --repeats 3 --budget-s 270 \
    --out "$out/e2e.json" > "$out/e2e.log" 2>&1
tail -n 8 "$out/e2e.log" | cut -c1-400
