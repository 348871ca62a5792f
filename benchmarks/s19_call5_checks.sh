#!/usr/bin/env bash
# Session 19's fifth device call (one H200): call 4's profile showed "split" never ran in a prefill: a prompt's
# pieces are whole frame groups (16,340 tokens at 352x480), never a multiple of the 16,384-query tile. Now tiles of
# 8,192 queries, a last tile of >= 3/4 of that padded (cuDNN still sees two shapes). GPU tests; the op alone; the
# prefill at 1024 then 768 frames, flash against split interleaved; the user's path with a 128-frame-piece stream.
# bash benchmarks/s19_call5_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_anchor_split.py > "$out/gpu_tests.log" 2>&1
tail -n 2 "$out/gpu_tests.log"
timeout 80 python3 benchmarks/bench_anchor_attention.py --piece 16340 --out "$out/anchor_attention.json" \
    > "$out/anchor_attention.log" 2>&1
grep -E "pieces_flash|pieces_split" "$out/anchor_attention.log" | cut -c1-200
timeout 200 python3 benchmarks/prefill_ab.py --frames 1024 768 --variants now anchor_split --repeats 3 \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round|first_s" "$out/prefill_ab.log" | cut -c1-300
timeout 150 python3 benchmarks/bench_e2e.py --models ours --precisions bf16 --frames 1024 --decode-tokens 8 \
    --anchor-attention split flash --stream-frames 512 --piece-frames 128 --budget-s 140 \
    --out "$out/e2e.json" > "$out/e2e.log" 2>&1
tail -n 6 "$out/e2e.log" | cut -c1-400
