#!/usr/bin/env bash
# Session 21, calls 3-4 (one GPU): a 1024-frame prompt (call 4: and a 128-frame one, first) profiled with the GPU's busy time charged to the host stage
# that launched each kernel (profile_prefill.py --idle: device_by_stage), to say what the 0.2-0.5 s outside the
# CUDA-event stages is, and what the stream engine's TTT projections + conv stage (0.39-0.65 s) spends.
# bash benchmarks/s21_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 420 python3 benchmarks/profile_prefill.py --frames 128 1024 --top 40 --idle \
    --out "$out/profile_1024.json" > "$out/profile_1024.log" 2>&1
grep -v Warning "$out/profile_1024.log" | cut -c1-170 | head -200
# call 4 ran it again after the fix to gpu_idle.profiled_intervals (the GPU timeline's copies of the labels had
# counted as busy time): first the 128-frame prompt, then 1024 frames
