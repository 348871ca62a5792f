#!/usr/bin/env bash
# Session 20's fourth device call (one H200): should "split" anchors be the default? Call 3's profiles (a stream of
# 512 frames in 128-frame pieces, warmed up) did not show session 19's stream slowdown. Now streams of 1024 and 512
# frames in 128-frame pieces, then the 1024-frame prompt, each flash against split in interleaved rounds of one
# process, with stage times by CUDA events and each variant's memory checksum / first token.
# bash benchmarks/s20_call4_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
for frames in 1024 512; do
    timeout 150 python3 benchmarks/prefill_ab.py --stream "$frames" 128 --variants now anchor_split --repeats 5 \
        --stages --out "$out/stream_$frames.json" > "$out/stream_$frames.log" 2>&1
    grep -E "round" "$out/stream_$frames.log" | cut -c1-200
done
timeout 200 python3 benchmarks/prefill_ab.py --frames 1024 --variants now anchor_split --repeats 7 --stages \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round" "$out/prefill_ab.log" | cut -c1-200
