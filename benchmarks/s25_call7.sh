#!/usr/bin/env bash
# Session 25, seventh device call (one GPU): the user's path (bench_e2e) with the session's last code (the chunk
# loop no longer slices a whole chunk's rows twice: host time only).
# bash benchmarks/s25_call7.sh OUT_DIR  (PYTHONPATH: src and benchmarks)
set -uo pipefail
out=$1; mkdir -p "$out"
bash benchmarks/e2e_user_path.sh "$out"
