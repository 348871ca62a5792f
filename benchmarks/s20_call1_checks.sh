#!/usr/bin/env bash
# Session 20's first device call (one H200): the GPU tests not run since their code last changed (split anchors'
# autograd test and the padded-tile version among them; the three long files go in the next call); the fast-weight
# step with its three weight-gradient products stacked into one batched product; the anchors' stage time in the
# 1024-frame prefill, split against flash, by CUDA events.
# bash benchmarks/s20_call1_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 200 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=5 tests/gpu \
    --ignore=tests/gpu/test_gpu_paths.py --ignore=tests/gpu/test_decode_graph.py \
    --ignore=tests/gpu/test_stream_device.py > "$out/gpu_tests.log" 2>&1
grep -E "FAILED|ERROR|passed|failed" "$out/gpu_tests.log" | tail -n 12 | cut -c1-300
timeout 130 python3 benchmarks/fast_weight_variants.py --precisions bf16 --variants separate stacked \
    stacked_splitk library gemms_separate gemms_stacked --out "$out/variants.json" > "$out/variants.log" 2>&1
grep -E "variant" "$out/variants.log" | cut -c1-250
timeout 220 python3 benchmarks/prefill_ab.py --frames 1024 --variants now anchor_split --repeats 5 --stages \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round|median|stage" "$out/prefill_ab.log" | tail -n 14 | cut -c1-300
