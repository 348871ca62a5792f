#!/usr/bin/env bash
# Session 25, fifth device call (one GPU): the user's path again (bench_e2e, session 24's library code) on another
# machine, call 4's host having been slow (plain Qwen3-VL decoding at 44.9 ms/token against 26.5).
# bash benchmarks/s25_call5.sh OUT_DIR  (PYTHONPATH: src and benchmarks)
set -uo pipefail
out=$1; mkdir -p "$out"
bash benchmarks/e2e_user_path.sh "$out"
