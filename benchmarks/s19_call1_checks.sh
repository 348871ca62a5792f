#!/usr/bin/env bash
# Session 19's first device call (one H200): where a 1024-frame prefill's time goes now (the last full profile is
# session 7's, on an H100, before the compiled norms, the resident fast weights and the conv kernel), and what a
# fresh process pays before its first token at 1024 frames with the one-off CLI's kernel (reference), cold and
# warm compile cache: cold_start.py was never run on a GPU.
# bash benchmarks/s19_call1_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 300 python3 benchmarks/profile_prefill.py --frames 1024 --top 40 --out "$out/profile_1024.json" \
    > "$out/profile_1024.log" 2>&1
tail -n 60 "$out/profile_1024.log" | cut -c1-220
timeout 230 python3 benchmarks/cold_start.py --frames 1024 --kernels reference --child-timeout-s 110 \
    --out "$out/cold_start.json" > "$out/cold_start.log" 2>&1
cut -c1-400 "$out/cold_start.log" | tail -n 6
