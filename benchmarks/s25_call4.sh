#!/usr/bin/env bash
# Session 25, fourth device call (one GPU): the TTT layers' window through flex in the model's layout (q, k, v as
# transposed [B, S, H, hd] projections, the window cache concatenated) and in contiguous [B, H, S, hd] tensors
# (call 2's), TMA loads against none (call 3's prompt A/B saw no change in the window's stage), then the user's
# path (bench_e2e) with this commit's defaults.
# bash benchmarks/s25_call4.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
for layout in model contiguous; do
    timeout 150 python3 benchmarks/bench_window_attention.py --layout $layout --out "$out/window_$layout.json" \
        > "$out/window_$layout.log" 2>&1
    grep -E "^(stream_)?[a-z0-9_]+ \{" "$out/window_$layout.log" | cut -c1-200
done
bash benchmarks/e2e_user_path.sh "$out"
