#!/usr/bin/env bash
# The user's path on one GPU, the current code, in one go (~25 minutes on an H100 from cold): the GPU tests first
# (stopping at the first failure, so that its traceback is written before any timeout); bench_e2e, ours (bf16)
# and plain Qwen3-VL at 128/512/1024 frames in one process plus a 1024-frame stream in 32-frame pieces (RESULTS.md's
# headline table); then ours in the reference-exact mode (fp32 products) at 1024 frames with the stream in 128-frame
# pieces; the fast-weight operator alone at chunk 2648 (every kernel, bf16 and fp32). Timings are for an idle
# machine: session 13 ran it beside six training runs on the other GPUs of the host, and everything was slower.
# bash benchmarks/e2e_checks.sh OUT_DIR  (PYTHONPATH: src and benchmarks; CUDA_VISIBLE_DEVICES picks the GPU)
set -uo pipefail  # no -e: each step's result is kept even where an earlier one failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
timeout 480 python3 -m pytest -x -q -p no:cacheprovider --tb=short tests/gpu > "$out/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; tail -n 30 "$out/gpu_tests.log"
timeout 720 python3 benchmarks/bench_e2e.py --frames 128 512 1024 --precisions bf16 --models ours plain --pixels host \
    --decode-tokens 16 --stream-frames 1024 --piece-frames 32 --budget-s 660 --out "$out/e2e_bf16.json" > "$out/e2e_bf16.log" 2>&1
echo "bench_e2e bf16 rc=$?"
timeout 420 python3 benchmarks/bench_e2e.py --frames 1024 --precisions fp32 bf16 --models ours --pixels host \
    --decode-tokens 16 --stream-frames 1024 --piece-frames 128 --budget-s 380 --out "$out/e2e_fp32_p128.json" > "$out/e2e_fp32_p128.log" 2>&1
echo "bench_e2e fp32 + 128-frame pieces rc=$?"
timeout 240 python3 benchmarks/bench_fast_weight.py --chunk 2648 --out "$out/fast_weight.json" > "$out/fast_weight.log" 2>&1
echo "bench_fast_weight rc=$?"
touch "$out/done"
