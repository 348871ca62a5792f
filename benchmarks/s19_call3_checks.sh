#!/usr/bin/env bash
# Session 19's third device call (one H200): "split" anchors with cuDNN handed two fixed shapes (tiles of 16,384
# queries; rows that fill no tile through flash): its GPU tests; then prefill_ab at 1024 and then 768 frames,
# flash (the default) against split interleaved in one process, with each variant's first call at a length
# (first_s: what a new length costs split, now that only the last, ragged piece changes shape).
# bash benchmarks/s19_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_anchor_split.py > "$out/gpu_tests.log" 2>&1
tail -n 3 "$out/gpu_tests.log"
timeout 330 python3 benchmarks/prefill_ab.py --frames 1024 768 --variants now anchor_split --repeats 3 \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round|first_s" "$out/prefill_ab.log" | cut -c1-300
