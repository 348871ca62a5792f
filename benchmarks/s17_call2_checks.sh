#!/usr/bin/env bash
# Session 17's second device call (one H200): call 1's first_answer.py child ran past its limit and, its output
# captured until its end, left nothing; now each child's steps are written as they finish and each child has 270 s.
# A user's first minutes in a fresh process, with the inference stages compiled as the library does (static, then
# dynamic; one compiled copy per kind of input) and with symbolic sizes from the first call.
# bash benchmarks/s17_call2_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 570 python3 benchmarks/first_answer.py --dynamic auto true --child-timeout-s 275 --pieces 3 \
    --out "$out/first_answer.json" > "$out/first_answer.log" 2>&1
python3 benchmarks/first_answer.py --show "$out/first_answer.json"
