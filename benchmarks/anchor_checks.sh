#!/usr/bin/env bash
# One device call (session 8): the anchors' "split" attention against flash on the GPU: one layer's attention as a
# prefill runs it (pieces of 16,384 queries) and as a stream runs it (32-frame pieces of 2,752), the user's path at
# 1024 frames and a 1024-frame stream with each setting on one model (bench_e2e.py), then the split path's tests.
# About 8 minutes on an H100 from cold. bash benchmarks/anchor_checks.sh OUT_DIR  (PYTHONPATH: src and benchmarks)
set -uo pipefail  # no -e: each step's result is kept even where an earlier one failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
for piece in 16384 2752; do
    timeout 60 python3 benchmarks/bench_anchor_attention.py --piece $piece --out "$out/anchor_attention_$piece.json" \
        > "$out/anchor_attention_$piece.log" 2>&1; echo "bench_anchor_attention $piece rc=$?"
    grep pieces_ "$out/anchor_attention_$piece.log"
done
timeout 360 python3 benchmarks/bench_e2e.py --models ours --precisions bf16 --frames 1024 --pixels host \
    --decode-tokens 16 --stream-frames 1024 --anchor-attention flash split --out "$out/e2e_anchor.json" \
    > "$out/e2e_anchor.log" 2>&1; echo "bench_e2e rc=$?"; grep -o '"anchor_attention.\{0,60\}\|prefill_s[^,]*\|frames_per_s[^,]*\|peak_gib[^,]*' "$out/e2e_anchor.log"
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_anchor_split.py > "$out/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; tail -n 3 "$out/gpu_tests.log"
