#!/usr/bin/env bash
# Session 18's first device call (one H200): the static decode step compiled per kind of layer (one graph for the
# TTT layers, one for the anchors) instead of one fullgraph of all 28 layers (91-97 s at a fresh process's first
# decoded answer in session 17). A user's first minutes (first_answer.py, the library's settings), with the first
# question's prefill (7.5 s in session 17, nothing compiled) under cProfile; then the GPU tests of graphed decoding.
# bash benchmarks/s18_call1_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 440 python3 benchmarks/first_answer.py --dynamic auto --child-timeout-s 420 --pieces 3 \
    --profile-steps ask_prefill ask_decode --out "$out/first_answer.json" > "$out/first_answer.log" 2>&1
python3 benchmarks/first_answer.py --show "$out/first_answer.json"
timeout 130 python3 -m pytest -q -x tests/gpu/test_decode_graph.py > "$out/test_decode_graph.log" 2>&1
tail -3 "$out/test_decode_graph.log"
