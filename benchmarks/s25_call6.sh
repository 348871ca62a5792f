#!/usr/bin/env bash
# Session 25, sixth device call (one GPU): where a prompt's time goes with session 24's code (the last profile,
# session 23's, predates the GELU epilogue and the resident norms): stages and kernels at 128 and 1024 frames, and
# the GPU's idle time by host stage (profile_prefill.py --idle), for the next session's choice.
# bash benchmarks/s25_call6.sh OUT_DIR  (PYTHONPATH: src and benchmarks)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 420 python3 benchmarks/profile_prefill.py --frames 128 1024 --top 40 --idle --out "$out/profile.json" \
    > "$out/profile.log" 2>&1
tail -5 "$out/profile.log" | cut -c1-300
