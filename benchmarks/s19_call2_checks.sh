#!/usr/bin/env bash
# Session 19's second device call (one H200): what a cuDNN attention call pays the first time it meets a shape,
# tensors or strides (cudnn_plans.py: why "split" anchors slowed a stream 3x in session 8); then cold_start.py at
# 1024 frames with the library's default kernel ("auto": graphed on a GPU), cold and warm compile cache, beside
# call 1's reference kernel (16.7 s cold, 11.3 s warm, 5.29 s again).
# bash benchmarks/s19_call2_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 90 python3 benchmarks/cudnn_plans.py --out "$out/cudnn_plans.json" > "$out/cudnn_plans.log" 2>&1
cut -c1-600 "$out/cudnn_plans.log" | tail -n 8
timeout 420 python3 benchmarks/cold_start.py --frames 1024 --kernels auto --child-timeout-s 200 \
    --out "$out/cold_start.json" > "$out/cold_start.log" 2>&1
cut -c1-400 "$out/cold_start.log" | tail -n 6
