#!/usr/bin/env bash
# One call on a 4-GPU host (nvidia-h100-x4: device time counts the machine, not its GPUs), four jobs at once, one
# per GPU (~9 minutes from cold): GPU 0 the GPU tests (stopping at the first failure with its traceback; a test
# stuck for 150 s dumps every thread's stack); GPU 1 the headline of RESULTS.md (bench_e2e: ours bf16 and plain
# Qwen3-VL at 128/512/1024 frames in one process, a 1024-frame stream in 32-frame pieces); GPU 2 where the pixels
# are when generate is called (pageable host memory as the pipeline leaves them, pinned, already on the GPU) at
# 128 and 1024 frames; GPU 3 the reference-exact mode (fp32 products) beside bf16 at 1024 frames with a stream in
# 128-frame pieces, then the fast-weight operator alone. The jobs share the host's cores, so a timing here is
# that of a busy host, not an idle one (e2e_checks.sh runs the same one job at a time).
# Session 14's call 1 ran it without --repeats (single timed calls; medians of 3 since).
# bash benchmarks/x4_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
CUDA_VISIBLE_DEVICES=0 timeout 540 python3 -m pytest -x -q -p no:cacheprovider --tb=short \
    -o faulthandler_timeout=150 tests/gpu > "$out/gpu_tests.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 540 python3 benchmarks/bench_e2e.py --frames 128 512 1024 --precisions bf16 \
    --models ours plain --pixels host --decode-tokens 16 --stream-frames 1024 --piece-frames 32 --repeats 3 --budget-s 500 \
    --out "$out/e2e_bf16.json" > "$out/e2e_bf16.log" 2>&1 &
CUDA_VISIBLE_DEVICES=2 timeout 540 python3 benchmarks/bench_e2e.py --frames 128 1024 --precisions bf16 \
    --models ours --pixels host pinned device --decode-tokens 16 --stream-frames 128 --piece-frames 32 \
    --budget-s 480 --out "$out/e2e_pixels.json" > "$out/e2e_pixels.log" 2>&1 &
(CUDA_VISIBLE_DEVICES=3 timeout 360 python3 benchmarks/bench_e2e.py --frames 1024 --precisions fp32 bf16 \
    --models ours --pixels host --decode-tokens 16 --stream-frames 1024 --piece-frames 128 --budget-s 320 \
    --out "$out/e2e_fp32_p128.json" > "$out/e2e_fp32_p128.log" 2>&1
 CUDA_VISIBLE_DEVICES=3 timeout 170 python3 benchmarks/bench_fast_weight.py --chunk 2648 \
    --out "$out/fast_weight.json" > "$out/fast_weight.log" 2>&1) &
wait
tail -n 40 "$out/gpu_tests.log"
grep -h -o '"model": "[a-z_0-9]*"\|"frames": [0-9]*\|"pixels": "[a-z]*"\|"prefill_s": [0-9.]*\|"peak_gib": [0-9.]*\|"frames_per_s": [0-9.]*\|"decode_ms": [0-9.]*' \
    "$out"/e2e_*.log | paste -sd' ' | sed 's/"model"/\n"model"/g'
touch "$out/done"
