#!/usr/bin/env bash
# One device call (~9 minutes on an H100 from cold): the decoder's compiled norms (layers/norm.py, session 9) and
# compiled rope (layers/rope.py rope_qk, session 10) against their eager forms in the user's prefill at 128 and 1024
# frames, one process (prefill_ab.py; each length's first call compiles for ~93 s on an H200, 125-130 s on an H100);
# their GPU tests first.
# The user's path with a 1024-frame stream whose question is asked twice (bench_e2e.py) runs last, if time is left.
# bash benchmarks/fusion_checks.sh OUT_DIR  (PYTHONPATH: src and benchmarks)
set -uo pipefail  # no -e: each step's result is kept even where an earlier one failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_norm_gpu.py tests/gpu/test_rope_gpu.py > "$out/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; tail -n 3 "$out/gpu_tests.log"
timeout 400 python3 benchmarks/prefill_ab.py --frames 128 1024 --variants now eager_rope eager_norms --repeats 3 \
    --out "$out/prefill_fusion.json" > "$out/prefill_fusion.log" 2>&1; echo "prefill_ab rc=$?"; grep -v Warning "$out/prefill_fusion.log" | tail -n 6
timeout 100 python3 benchmarks/bench_e2e.py --models ours --precisions bf16 --frames 128 --pixels host \
    --decode-tokens 16 --stream-frames 1024 --out "$out/e2e.json" > "$out/e2e.log" 2>&1
echo "bench_e2e rc=$?"; grep -o 'prefill_s[^,]*\|frames_per_s[^,]*\|ask[a-z_]*[^,]*' "$out/e2e.log" | head -n 12
