#!/usr/bin/env bash
# For the next device call after session 15 (not yet run): the flash probe fixed at the end of session 15 had no
# device time left. GPU 0: the attention tests (the fixed probe, no repeat of the cache, GQA native bit for bit as
# repeated heads) and one piece's peak and time (after_cache_memory.py); GPU 1: ours at 1024 frames, pipeline
# pixels, for the peak and prefill with the cache no longer repeated; GPU 2: the same at 128 and 512 frames and
# plain Qwen3-VL beside. Each job on its own cores (taskset: call 2 of session 15 showed jobs sharing all cores
# oversubscribe the CPU).
# bash benchmarks/x4_attention_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name --format=csv,noheader
(CUDA_VISIBLE_DEVICES=0 timeout 200 taskset -c 0-15 python3 -m pytest -v -rf -p no:cacheprovider --tb=short \
    tests/gpu/test_gpu_paths.py -k "queries_after" > "$out/gpu_tests.log" 2>&1
 CUDA_VISIBLE_DEVICES=0 timeout 100 taskset -c 0-15 python3 benchmarks/after_cache_memory.py > "$out/after_cache.log" 2>&1) &
CUDA_VISIBLE_DEVICES=1 timeout 480 taskset -c 16-39 python3 benchmarks/bench_e2e.py --frames 1024 --precisions bf16 \
    --models ours --pixels pipeline --decode-tokens 16 --stream-frames 1024 --piece-frames 128 --repeats 3 \
    --budget-s 420 --out "$out/e2e_1024.json" > /dev/null 2>&1 &
CUDA_VISIBLE_DEVICES=2 timeout 480 taskset -c 40-63 python3 benchmarks/bench_e2e.py --frames 128 512 1024 \
    --precisions bf16 --models ours plain --pixels pipeline --decode-tokens 16 --stream-frames 1024 --piece-frames 32 \
    --repeats 3 --budget-s 420 --out "$out/e2e_head.json" > /dev/null 2>&1 &
wait
grep -E "PASSED|FAILED|passed|failed" "$out/gpu_tests.log" | tail -n 12
cat "$out/after_cache.log"
python3 - "$out" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("e2e_*.json")):
    d = json.loads(f.read_text())
    for r in d["runs"]:
        print(f.stem, r["model"], r["frames"], r["pixels"], {k: round(r[k], 3) for k in ("processor_s", "prefill_s",
              "vision_s", "decode_ms", "peak_gib") if isinstance(r.get(k), float)}, r.get("error", ""))
    for s in d["streams"]:
        print(f.stem, "stream", s.get("piece_frames"), round(s.get("frames_per_s", 0), 1), s.get("error", ""))
PY
