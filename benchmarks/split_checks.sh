#!/usr/bin/env bash
# What would decide whether "split" anchors (fixed cuDNN tiles, session 19) can be the default, in one device call
# (one GPU): the anchors' own time inside the 1024-frame prefill, split against flash, read by CUDA events per
# stage (session 19's whole-call A/Bs were lost in the machine's spread), then where a stream in 128-frame pieces
# loses time with split (session 19: 8-31 % slower), by stage and kernel, beside the same stream with flash.
# bash benchmarks/split_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 240 python3 benchmarks/prefill_ab.py --frames 1024 --variants now anchor_split --repeats 5 --stages \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round" "$out/prefill_ab.log" | cut -c1-200
for setting in flash split; do
    timeout 150 python3 benchmarks/profile_prefill.py --stream --frames 512 --piece-frames 128 --top 25 \
        --anchor-attention "$setting" --out "$out/stream_$setting.json" > "$out/stream_$setting.log" 2>&1
    grep -A 12 '"stages_s"' "$out/stream_$setting.log" | cut -c1-160
done
