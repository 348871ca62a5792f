#!/usr/bin/env bash
# Session 21, call 5 (one GPU): the stream engine's TTT conv inputs by one gather and one scatter per input ("now")
# against a slice per segment as before ("before_s21"), in interleaved rounds: the 1024- and 128-frame prompts
# (pipeline pixels), then a 1024-frame stream in 128-frame pieces; same first token / checksum expected.
# bash benchmarks/s21_call5_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 260 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now before_s21 --repeats 5 --stages \
    --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round" "$out/prompt_ab.log" | cut -c1-200
timeout 200 python3 benchmarks/prefill_ab.py --stream 1024 128 --variants now before_s21 --repeats 4 --stages \
    --out "$out/stream_ab.json" > "$out/stream_ab.log" 2>&1
grep -E "round" "$out/stream_ab.log" | cut -c1-200
