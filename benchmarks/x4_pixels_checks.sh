#!/usr/bin/env bash
# One call on a 4-GPU host (session 15's call 2), four jobs at once, one per GPU (~9 minutes from cold): GPU 0 the
# GPU tests from test_decode_graph.py on (tests 60-103: call 1 stopped at test 60, whose reference is compiled with
# emulated bf16 casts since); GPU 1 the headline: ours (processor pixels as the pipeline writes them now, and fp32
# pageable as it wrote them before) and plain Qwen3-VL at 128/512/1024 frames, a 1024-frame stream through the
# processor in 32-frame pieces; GPU 2 every pixel placement at 128 and 1024 frames, the stream in 128-frame
# pieces; GPU 3 the reference-exact mode (fp32 products) beside bf16 at 1024 frames, pipeline pixels.
# Shared host: timings are a busy host's. At most 7 files come back (the device returns 8).
# bash benchmarks/x4_pixels_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 timeout 540 python3 -m pytest -q -p no:cacheprovider --tb=short -o faulthandler_timeout=150 \
    tests/gpu/test_decode_graph.py tests/gpu/test_gpu_paths.py tests/gpu/test_host_pixels.py tests/gpu/test_norm_gpu.py \
    tests/gpu/test_rope_gpu.py tests/gpu/test_stream_device.py tests/gpu/test_ttt_branch.py > "$out/gpu_tests.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 560 python3 benchmarks/bench_e2e.py --frames 128 512 1024 --precisions bf16 \
    --models ours plain --pixels pipeline host --decode-tokens 16 --stream-frames 1024 --piece-frames 32 --repeats 3 \
    --budget-s 500 --out "$out/e2e_head.json" > "$out/e2e_head.log" 2>&1 &
CUDA_VISIBLE_DEVICES=2 timeout 540 python3 benchmarks/bench_e2e.py --frames 128 1024 --precisions bf16 \
    --models ours --pixels pipeline host pinned device --decode-tokens 16 --stream-frames 1024 --piece-frames 128 \
    --repeats 3 --budget-s 480 --out "$out/e2e_pixels.json" > /dev/null 2>&1 &
CUDA_VISIBLE_DEVICES=3 timeout 480 python3 benchmarks/bench_e2e.py --frames 1024 --precisions fp32 bf16 \
    --models ours --pixels pipeline --decode-tokens 16 --stream-frames 1024 --piece-frames 128 --repeats 3 \
    --budget-s 420 --out "$out/e2e_fp32.json" > /dev/null 2>&1 &
wait
grep -E "passed|failed|FAILED|Error" "$out/gpu_tests.log" | tail -n 30
grep -h "processor\|/ plain" "$out/e2e_head.log"
python3 - "$out" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("e2e_*.json")):
    d = json.loads(f.read_text())
    for r in d["runs"]:
        print(f.stem, r["model"], r["frames"], r["pixels"], {k: round(r[k], 3) for k in
              ("processor_s", "prefill_s", "vision_s", "decode_ms", "peak_gib") if isinstance(r.get(k), float)}, r.get("error", ""))
    for s in d["streams"]:
        print(f.stem, s["model"], "stream", s.get("piece_frames"), round(s.get("frames_per_s", 0), 1), s.get("error", ""))
PY
