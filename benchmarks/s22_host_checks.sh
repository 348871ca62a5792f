#!/usr/bin/env bash
# The next device call (one GPU) after session 21's host-side changes, which ran on the CPU only (no device time
# was left): what still synchronises in a 1024-frame generate(1) (67 before them, ten per piece), the GPU's idle
# time by host stage at 128 and 1024 frames (1.56 s of a profiled 3.70-s call before), and the prompts timed with
# the conv inputs and the vision tower's inputs as before (prefill_ab variants before_s21, vision_per_call).
# bash benchmarks/s22_host_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 130 python3 benchmarks/sync_points.py --frames 1024 --out "$out/sync_points.json" > "$out/sync_points.log" 2>&1
grep -v Warning "$out/sync_points.log" | head -30 | cut -c1-200
timeout 260 python3 benchmarks/profile_prefill.py --frames 128 1024 --top 30 --idle \
    --out "$out/profile.json" > "$out/profile.log" 2>&1
grep -E '"(total|busy|idle|seconds)"' "$out/profile.log"
timeout 200 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now before_s21 vision_per_call \
    --repeats 4 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round" "$out/prompt_ab.log" | cut -c1-200
# the GPU tests of the paths these changes touch (pinned copies of host data, streams on the device)
timeout 150 python3 -m pytest -q -x tests/gpu/test_stream_device.py tests/gpu/test_host_pixels.py \
    tests/core/test_vision_attention.py > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
