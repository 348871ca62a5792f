#!/usr/bin/env bash
# Session 18's second device call (one H200): the GPU tests of graphed decoding with the step's layers compiled per
# kind (call 1 ran 3 of 7 before its limit), then a fresh process up to its first long answer with the first
# question's prefill under torch.profiler and every Triton compilation timed (first_answer.py), to find the 7.5-10 s
# that question takes with no dynamo graph compiled.
# bash benchmarks/s18_call2_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 290 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=0 tests/gpu/test_decode_graph.py \
    > "$out/test_decode_graph.log" 2>&1
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/test_decode_graph.log" | tail -n 12
timeout 230 python3 benchmarks/first_answer.py --dynamic auto --child-timeout-s 215 --pieces 3 \
    --stop-after ask_decode_long --profile-steps ask_prefill --out "$out/first_answer.json" > "$out/first_answer.log" 2>&1
python3 benchmarks/first_answer.py --show "$out/first_answer.json"
