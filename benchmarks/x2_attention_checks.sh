#!/usr/bin/env bash
# Session 16's first device call (2 x H200: the kinds lent that day): what session 15 could not run.
# GPU 0 (cores 0-11): the attention tests of the fixed flash probe (no repeat of the cache, GQA native bit for bit
# as repeated heads), one piece's peak and time after a cache (after_cache_memory.py), then the chunk step's
# formulations side by side (fast_weight_variants.py, max-autotune too) and the operator as the library runs it.
# GPU 1 (cores 12-31): the user's path, ours and plain Qwen3-VL at 128 / 512 / 1024 frames, pipeline pixels, and a
# 1024-frame stream in 32-frame pieces. Each job on its own cores (taskset: session 15's call 2 showed jobs sharing
# all cores oversubscribe the CPU).
# bash benchmarks/x2_attention_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name --format=csv,noheader
(export CUDA_VISIBLE_DEVICES=0
 timeout 150 taskset -c 0-11 python3 -m pytest -v -rf -p no:cacheprovider --tb=short \
    tests/gpu/test_gpu_paths.py -k "queries_after" > "$out/gpu_tests.log" 2>&1
 timeout 80 taskset -c 0-11 python3 benchmarks/after_cache_memory.py > "$out/after_cache.log" 2>&1
 timeout 240 taskset -c 0-11 python3 benchmarks/fast_weight_variants.py --autotune --out "$out/variants.json" \
    > "$out/variants.log" 2>&1
 timeout 60 taskset -c 0-11 python3 benchmarks/bench_fast_weight.py --kernels graphed --out "$out/fast_weight.json" \
    > "$out/fast_weight.log" 2>&1) &
CUDA_VISIBLE_DEVICES=1 timeout 500 taskset -c 12-31 python3 benchmarks/bench_e2e.py --frames 128 512 1024 \
    --precisions bf16 --models ours plain --pixels pipeline --decode-tokens 16 --stream-frames 1024 --piece-frames 32 \
    --repeats 3 --budget-s 440 --out "$out/e2e.json" > "$out/e2e.log" 2>&1 &
wait
grep -E "PASSED|FAILED|passed|failed" "$out/gpu_tests.log" | tail -n 12
cat "$out/after_cache.log" "$out/variants.log" "$out/fast_weight.log"
python3 - "$out" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("e2e*.json")):
    d = json.loads(f.read_text())
    for r in d["runs"]:
        print(f.stem, r["model"], r["frames"], r["pixels"], {k: round(r[k], 3) for k in ("processor_s", "prefill_s",
              "vision_s", "decode_ms", "peak_gib", "state_gib") if isinstance(r.get(k), float)}, r.get("error", ""))
    for s in d["streams"]:
        print(f.stem, "stream", s.get("piece_frames"), round(s.get("frames_per_s", 0), 1), s.get("error", ""))
PY
