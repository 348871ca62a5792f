#!/usr/bin/env bash
# Session 17's third device call (one H200): the GPU tests that run compiled stages and the graphed decode, with
# one compiled copy per kind of input (ops/compiled.py).
# bash benchmarks/s17_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 450 python3 -m pytest -v -rf -p no:cacheprovider --tb=short tests/gpu/test_gpu_paths.py \
    tests/gpu/test_stream_device.py tests/gpu/test_decode_graph.py > "$out/gpu_tests.log" 2>&1
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/gpu_tests.log" | tail -n 40
