#!/usr/bin/env bash
# Session 21, call 6 (one GPU): the vision tower's grid inputs computed once per grid ("now") against derived at
# every call with a synchronisation per block ("vision_per_call"), interleaved rounds at 1024 and 128 frames;
# then every synchronising CUDA call of a 1024-frame generate(1), by the line that made it (sync_points.py).
# bash benchmarks/s21_call6_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 170 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now vision_per_call --repeats 4 --stages \
    --out "$out/vision_ab.json" > "$out/vision_ab.log" 2>&1
grep -E "round" "$out/vision_ab.log" | cut -c1-200
timeout 130 python3 benchmarks/sync_points.py --frames 1024 --out "$out/sync_points.json" > "$out/sync_points.log" 2>&1
grep -v Warning "$out/sync_points.log" | head -45 | cut -c1-200
