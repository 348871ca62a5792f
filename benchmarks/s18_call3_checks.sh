#!/usr/bin/env bash
# Session 18's third device call (one H200): what each Triton compilation at the first question was specialised on
# (call 2: 7 compilations of the spatial conv's kernel, 4.95 s of its 7.1 s), up to a question of another length;
# then the user's path at 128 and 1024 frames with the decode step's layers compiled per kind (decode ms/token
# after a 1024-frame prompt: 7.6 in session 16 with the one-graph step, one H200 alone).
# bash benchmarks/s18_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 210 python3 benchmarks/first_answer.py --dynamic auto --child-timeout-s 200 --pieces 3 \
    --stop-after ask_other_length --out "$out/first_answer.json" > "$out/first_answer.log" 2>&1
python3 benchmarks/first_answer.py --show "$out/first_answer.json"
timeout 260 python3 benchmarks/bench_e2e.py --frames 128 1024 --precisions bf16 --models ours --decode-tokens 32 \
    --repeats 3 --budget-s 230 --out "$out/e2e.json" > "$out/e2e.log" 2>&1
tail -n 4 "$out/e2e.log"
