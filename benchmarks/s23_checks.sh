#!/usr/bin/env bash
# The next device call (one GPU) after session 22, whose last measurements left no device time for these: where a
# 1024-frame prompt's GPU idles now (split anchors the default, the stream engine's conv where the groups lie;
# session 22 call 1 read 0.73 s idle of a profiled 2.95-s call before both), the conv stencil's tiles against a
# plain copy of the same bytes (session 22's profile put the stencil at ~560 GB/s, ~8x off its floor), and the
# GPU suite (last whole in session 20; what 240 s allows: the rest in a call of its own).
# bash benchmarks/s23_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 230 python3 benchmarks/profile_prefill.py --frames 128 1024 --top 30 --idle \
    --out "$out/profile.json" > "$out/profile.log" 2>&1
grep -E '"(total|busy|idle|seconds)"' "$out/profile.log"
timeout 100 python3 benchmarks/bench_conv.py --repeat 50 --out "$out/conv.json" > "$out/conv.log" 2>&1
tail -n 12 "$out/conv.log" | cut -c1-200
timeout 240 python3 -m pytest -q tests/gpu > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
