#!/usr/bin/env bash
# Session 25, second device call (one GPU): the TTT layers' window attention (flex_attention, band block mask)
# under flex's kernel options and max-autotune, one layer of a 1024-frame prefill and a 128-frame stream piece
# (bench_window_attention.py).
# Ran before bench_window_attention.py had --layout: its contiguous tensors are now --layout contiguous.
# bash benchmarks/s25_call2.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 480 python3 benchmarks/bench_window_attention.py --layout contiguous --autotune --out "$out/window.json" > "$out/window.log" 2>&1
grep -E "^(stream_)?[a-z0-9_]+ \{" "$out/window.log" | cut -c1-250
tail -3 "$out/window.log" | cut -c1-300
