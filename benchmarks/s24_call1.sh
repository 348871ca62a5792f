#!/usr/bin/env bash
# The next device call (one GPU) after session 23, whose device time ran out: the user's path again (bench_e2e;
# session 23's call-4 machine was slow on host-bound work: plain Qwen3-VL's decode 43.2 against 34.7 ms/token the
# session before, our stream 287.9 against 377.8 frames/s), the stencil with its weight in fp32 (bench_conv's
# fp32_weight_ms: 15 % fewer SASS instructions, not timed yet) and 16-frame runs, and the GPU suite as far as it goes.
# bash benchmarks/s24_call1.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
bash benchmarks/e2e_user_path.sh "$out"
timeout 90 python3 benchmarks/bench_conv.py --repeat 20 --out "$out/conv.json" > "$out/conv.log" 2>&1
tail -n 3 "$out/conv.log" | cut -c1-160
timeout 180 python3 -m pytest -q tests/gpu > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
