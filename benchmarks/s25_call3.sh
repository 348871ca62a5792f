#!/usr/bin/env bash
# Session 25, third device call (one GPU): flex_attention's tiles loaded by TMA (attention_gpu.FLEX_OPTIONS, the
# TTT layers' window): the GPU tests of the flex paths, then a prompt A/B at 1024 and 128 frames with stages
# (flex_no_tma = inductor's default loads, as before).
# Runs at commit c8fa4eb only (FLEX_OPTIONS and the flex_no_tma variant were taken out after call 4).
# bash benchmarks/s25_call3.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 120 python3 -m pytest -q tests/gpu/test_gpu_paths.py -k "window_through_flex or band or queries_after" \
    > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
timeout 400 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now flex_no_tma \
    --repeats 3 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak|Error" "$out/prompt_ab.log" | cut -c1-400
