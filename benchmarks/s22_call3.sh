#!/usr/bin/env bash
# Session 22, third device call (one GPU), with anchor_attention = "split" the library's default: the user's path
# (bench_e2e: ours and plain Qwen3-VL in one process, 128 and 1024 frames, a 1024-frame stream in 128-frame
# pieces), the stream under split against flash (the streaming target: >= 280 frames/s), and pieces of 32,768
# tokens on top of split.
# bash benchmarks/s22_call3.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
bash benchmarks/e2e_user_path.sh "$out"
timeout 110 python3 benchmarks/prefill_ab.py --stream 1024 128 --variants now anchor_flash --repeats 3 --stages \
    --out "$out/stream_ab.json" > "$out/stream_ab.log" 2>&1
grep -E "round" "$out/stream_ab.log" | cut -c1-200
timeout 110 python3 benchmarks/prefill_ab.py --frames 1024 --variants now piece_32k --repeats 3 --stages \
    --out "$out/piece_ab.json" > "$out/piece_ab.log" 2>&1
grep -E "round|peak" "$out/piece_ab.log" | cut -c1-260
