#!/usr/bin/env bash
# Session 22, second device call (one GPU): the synchronisations left in a 1024-frame generate(1) after the
# embedding's placeholder checks moved to host memory (18 before: 12 of them those checks), and the two settings
# that trade the host's work for something else, timed beside the library in one process with the host's overhead
# lower than when they were last measured: split anchor attention (cuDNN tiles; session 21: -0.15 s as a stage,
# no whole-call gain) and prompt pieces of 32,768 tokens (half the pieces: half the host's launches per token).
# bash benchmarks/s22_call2.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 130 python3 benchmarks/sync_points.py --frames 1024 --out "$out/sync_points.json" > "$out/sync_points.log" 2>&1
grep -v Warning "$out/sync_points.log" | head -12 | cut -c1-200
timeout 330 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now anchor_split piece_32k \
    --repeats 5 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-260
timeout 60 python3 -m pytest -q -x tests/core/test_vision_attention.py > "$out/gpu_tests.log" 2>&1
tail -2 "$out/gpu_tests.log"
