#!/usr/bin/env bash
# One device call: the decode GPU tests, the decode profile and the user's path at 1024 frames (RESULTS.md,
# "Latest runs"). About 7 minutes on an H100 from cold (compilation included).
# bash benchmarks/gpu_checks.sh OUT_DIR      (PYTHONPATH must hold src and benchmarks)
set -uo pipefail  # no -e: each step's result is kept even where an earlier one failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/gpu/test_decode_graph.py tests/gpu/test_decode_attention.py \
    > "$out/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"; tail -n 3 "$out/gpu_tests.log"
timeout 100 python3 benchmarks/profile_decode.py --prompt-tokens 88000 --tokens 128 --precision bf16 \
    --out "$out/profile_decode_bf16.json" > "$out/profile_decode.log" 2>&1; echo "profile_decode rc=$?"
timeout 290 python3 benchmarks/bench_e2e.py --models ours --precisions bf16 --frames 1024 --pixels host --trace-peak \
    --decode-tokens 64 --stream-frames 256 --out "$out/e2e_1024.json" > "$out/e2e.log" 2>&1; echo "bench_e2e rc=$?"
tail -n 5 "$out"/*.log
