#!/usr/bin/env bash
# Session 19's fourth device call (one H200): call 3 found fixed-tile "split" anchors only 0.03 s faster than flash
# end to end at 1024 frames (2.89 vs 2.92 s), where cuDNN's rate promised ~0.2 s. The op alone (one layer, 88,094
# tokens: flash pieces, split pieces, cuDNN's square), then the prefill profiled by stage and kernel with split.
# bash benchmarks/s19_call4_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 120 python3 benchmarks/bench_anchor_attention.py --out "$out/anchor_attention.json" \
    > "$out/anchor_attention.log" 2>&1
cut -c1-300 "$out/anchor_attention.log" | tail -n 6
timeout 300 python3 benchmarks/profile_prefill.py --frames 1024 --top 30 --anchor-attention split \
    --out "$out/profile_split.json" > "$out/profile_split.log" 2>&1
tail -n 45 "$out/profile_split.log" | cut -c1-200
