#!/usr/bin/env bash
# Session 15's call 3 on a 4-GPU host, three jobs at once, each on its own CPU cores (taskset: call 2's processor
# timings came from jobs that shared all 64 cores, every torch op asking for 64 threads): GPU 0 the GPU tests from
# test_decode_graph's bf16 test on, verbose (call 2's quiet run was cut off by its limit before its summary);
# GPU 1 the processor alone (bench_processor.py: threads, dtypes, pinned, on the GPU); GPU 2 ours at 128 and 1024
# frames from uint8 frames, pixels as the pipeline writes them and as before, and a 1024-frame stream through the
# processor in 32-frame pieces.
# bash benchmarks/x4_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name --format=csv,noheader; nproc
CUDA_VISIBLE_DEVICES=0 timeout 450 taskset -c 0-23 python3 -m pytest -v -rf -p no:cacheprovider --tb=short \
    -o faulthandler_timeout=150 tests/gpu/test_decode_graph.py::test_bf16_static_weights_give_the_bits_of_fp32_copies \
    tests/gpu/test_gpu_paths.py tests/gpu/test_host_pixels.py tests/gpu/test_norm_gpu.py tests/gpu/test_rope_gpu.py \
    tests/gpu/test_stream_device.py tests/gpu/test_ttt_branch.py > "$out/gpu_tests.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 300 taskset -c 24-39 python3 benchmarks/bench_processor.py --frames 128 1024 \
    --threads 1 4 16 --out "$out/processor.json" > /dev/null 2>&1 &
CUDA_VISIBLE_DEVICES=2 timeout 450 taskset -c 40-63 python3 benchmarks/bench_e2e.py --frames 128 1024 --precisions bf16 \
    --models ours --pixels pipeline host --decode-tokens 16 --stream-frames 1024 --piece-frames 32 --repeats 3 \
    --budget-s 400 --out "$out/e2e.json" > "$out/e2e.log" 2>&1 &
wait
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/gpu_tests.log" | sed 's/^tests\/gpu\///' | tail -n 60
grep -B2 -A25 "^____" "$out/gpu_tests.log" | head -n 120
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
if (out / "processor.json").exists():
    for r in json.loads((out / "processor.json").read_text())["runs"]:
        print("processor", r["frames"], r["threads"], r["variant"], round(r["seconds"], 3), r["exact"])
if (out / "e2e.json").exists():
    d = json.loads((out / "e2e.json").read_text())
    for r in d["runs"]:
        print("e2e", r["frames"], r["pixels"], {k: round(r[k], 3) for k in ("processor_s", "prefill_s", "vision_s",
              "decode_ms", "peak_gib") if isinstance(r.get(k), float)}, r.get("error", ""))
    for s in d["streams"]:
        print("stream", s.get("piece_frames"), round(s.get("frames_per_s", 0), 1), s.get("error", ""))
PY
