#!/usr/bin/env bash
# Session 20's fifth device call (one H200): call 4 saw the anchors' stage shrink by 0.10-0.15 s with "split" while
# the TTT layers' grew by 0.02-0.06 s (CUDA events, interleaved rounds). Is the host then on the critical path in
# the TTT layers (flash's long anchor kernels had let it run ahead)? GPU idle by host stage, split then flash.
# bash benchmarks/s20_call5_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
for setting in split flash; do
    timeout 160 python3 benchmarks/profile_prefill.py --frames 1024 --top 12 --idle --anchor-attention "$setting" \
        --out "$out/idle_$setting.json" > "$out/idle_$setting.log" 2>&1
    grep -A 30 '"gpu_idle_s"' "$out/idle_$setting.log" | cut -c1-160 | head -30
done
