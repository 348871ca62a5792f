#!/usr/bin/env bash
# One device call (session 8): the anchors' "split" attention on the GPU (tests, one-layer timing) and the user's
# prefill with it against the default flash path at 1024 and 128 frames, one process (prefill_ab.py).
# bash benchmarks/anchor_checks.sh OUT_DIR      (PYTHONPATH must hold src and benchmarks)
set -uo pipefail  # no -e: each step's result is kept even where an earlier one failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_anchor_split.py tests/gpu/test_decode_graph.py \
    > "$out/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"; tail -n 3 "$out/gpu_tests.log"
timeout 90 python3 benchmarks/bench_anchor_attention.py --out "$out/anchor_attention.json" \
    > "$out/anchor_attention.log" 2>&1; echo "bench_anchor_attention rc=$?"; tail -n 8 "$out/anchor_attention.log"
timeout 300 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now anchor_split --repeats 3 \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1; echo "prefill_ab rc=$?"; tail -n 6 "$out/prefill_ab.log"
