#!/usr/bin/env bash
# Session 24, fifth device call (one GPU): call 4's bench_e2e put a 128-frame generate(1) at 0.258 s against 0.216
# in call 1 (before this session's changes; generate(17)'s prefill part the same, ~0.18 s, in both): this
# session's two changes undone one at a time on 128 frames (gelu_apart, norms_copied), interleaved rounds.
# bash benchmarks/s24_call5.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 170 python3 benchmarks/prefill_ab.py --frames 128 --variants now gelu_apart norms_copied --repeats 5 \
    --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-300
