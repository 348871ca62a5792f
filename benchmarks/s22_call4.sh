#!/usr/bin/env bash
# Session 22, fourth device call (one GPU): the stream engine's conv by the Triton kernel over a piece's frame
# groups where they lie (ops/conv_triton.conv_token_groups_triton; before: gathered into a padded volume, convolved,
# written back), first its GPU tests (against the reference, under the model), then prompts and a stream timed
# against the gathered form (prefill_ab variant before_s22) in one process.
# bash benchmarks/s22_call4.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 120 python3 -m pytest -q -x tests/gpu/test_conv_triton.py tests/gpu/test_stream_device.py \
    > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
timeout 200 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now before_s22 --repeats 5 --stages \
    --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-260
timeout 110 python3 benchmarks/prefill_ab.py --stream 1024 128 --variants now before_s22 --repeats 3 --stages \
    --out "$out/stream_ab.json" > "$out/stream_ab.log" 2>&1
grep -E "round" "$out/stream_ab.log" | cut -c1-200
