#!/usr/bin/env bash
# Session 20's third device call (one H200): where a stream in 128-frame pieces loses time with "split" anchors
# (session 19: 8-31 % slower), profiled by stage and kernel beside the same stream with flash; then the last two
# GPU test files (graphed decoding, a stream's state on the device).
# bash benchmarks/s20_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
for setting in flash split; do
    timeout 130 python3 benchmarks/profile_prefill.py --stream --frames 512 --piece-frames 128 --top 25 \
        --anchor-attention "$setting" --out "$out/stream_$setting.json" > "$out/stream_$setting.log" 2>&1
    tail -n 3 "$out/stream_$setting.log" | cut -c1-300
done
timeout 250 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=5 tests/gpu/test_stream_device.py \
    tests/gpu/test_decode_graph.py > "$out/gpu_tests.log" 2>&1
grep -E "FAILED|ERROR|passed|failed" "$out/gpu_tests.log" | tail -n 12 | cut -c1-300
