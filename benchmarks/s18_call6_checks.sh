#!/usr/bin/env bash
# Session 18's sixth device call (one H200): call 5 (a fresh machine) gave 3.86 s at 1024 frames where call 3 gave
# 2.63 s, and 12.2 ms/token where call 3 gave 6.9 (the decode, which neither change of calls 3-4 touches): the
# machine, or the conv launch / masked SDPA change? The library against its launch before them, interleaved in one
# process (prefill_ab.py --variants now before_s18).
# bash benchmarks/s18_call6_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 200 python3 benchmarks/prefill_ab.py --frames 1024 --variants now before_s18 --repeats 3 \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
tail -n 4 "$out/prefill_ab.log" | cut -c1-500
