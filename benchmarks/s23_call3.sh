#!/usr/bin/env bash
# Session 23, third device call (one GPU): the GPU tests of this session's paths (call 2's stopped at 150 s, 37
# passed), the conv stencil's tiles in the form the model runs it (bench_conv's ``rows``: groups among token rows;
# call 2's sweep of the padded volume put 32-token tiles at 0.23 against 0.36 ms, but a prompt did not get faster),
# and a 1024-frame prompt at those tiles (prefill_ab variants tile_hw32, tile_hw32_t16; interleaved rounds).
# bash benchmarks/s23_call3.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 180 python3 -m pytest -q -x tests/gpu/test_stream_device.py tests/gpu/test_host_pixels.py \
    tests/core/test_vision_attention.py tests/gpu/test_conv_triton.py > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
timeout 90 python3 benchmarks/bench_conv.py --repeat 20 --out "$out/conv.json" > "$out/conv.log" 2>&1
tail -n 3 "$out/conv.log" | cut -c1-160
timeout 180 python3 benchmarks/prefill_ab.py --frames 1024 --variants now tile_hw32 tile_hw32_t16 --repeats 4 \
    --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-300
