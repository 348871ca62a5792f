#!/usr/bin/env bash
# Session 25, first device call (one GPU): the TTT layers' sliding window through cuDNN tiles merged by log-sum-exp
# (config.window_attention = "split", attention_in_window_split) against flex_attention: one layer's window over a
# 1024-frame prefill and a 128-frame stream piece at several tilings (bench_window_attention.py), then a
# 1024-frame prompt A/B with stages (window_flex / window_split / window_split_1k).
# Runs at commit 2833648 only (the "split" window was removed after this call: slower).
# bash benchmarks/s25_call1.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 200 python3 benchmarks/bench_window_attention.py --out "$out/window.json" > "$out/window.log" 2>&1
cut -c1-250 "$out/window.log" | tail -20
timeout 330 python3 benchmarks/prefill_ab.py --frames 1024 --variants window_flex window_split window_split_1k \
    --repeats 3 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak|Error|error" "$out/prompt_ab.log" | cut -c1-400
