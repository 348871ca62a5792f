#!/usr/bin/env bash
# Session 16's second device call (2 x H200): the fast weights kept in the graphed step's buffers within a call.
# GPU 0 (cores 0-11): the GPU tests of the kernels, the graphed decode and a stream saved on the GPU; the operator
# as the library runs it (bench_fast_weight.py: call 1 measured 115 TFLOP/s graphed bf16 before the change) and
# the step alone (fast_weight_variants.py). GPU 1 (cores 12-31): the prefill with the weights resident against
# copied in and out at every chunk, in one process (prefill_ab.py: now / weights_copied), then the user's path.
# bash benchmarks/x2_resident_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name --format=csv,noheader
(export CUDA_VISIBLE_DEVICES=0
 timeout 330 taskset -c 0-11 python3 -m pytest -v -rf -p no:cacheprovider --tb=short tests/gpu/test_gpu_paths.py \
    tests/gpu/test_ttt_branch.py tests/gpu/test_stream_device.py tests/gpu/test_decode_graph.py > "$out/gpu_tests.log" 2>&1
 timeout 60 taskset -c 0-11 python3 benchmarks/bench_fast_weight.py --kernels graphed --out "$out/fast_weight.json" \
    > "$out/fast_weight.log" 2>&1
 timeout 60 taskset -c 0-11 python3 benchmarks/fast_weight_variants.py --variants library separate \
    --precisions bf16 fp32 --out "$out/variants.json" > "$out/variants.log" 2>&1) &
(export CUDA_VISIBLE_DEVICES=1
 timeout 330 taskset -c 12-31 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now weights_copied \
    --repeats 3 --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
 timeout 150 taskset -c 12-31 python3 benchmarks/bench_e2e.py --frames 128 --precisions bf16 --models ours \
    --pixels pipeline --decode-tokens 16 --stream-frames 1024 --piece-frames 128 --repeats 3 --budget-s 130 \
    --out "$out/e2e.json" > "$out/e2e.log" 2>&1) &
wait
grep -E "PASSED|FAILED|passed|failed" "$out/gpu_tests.log" | tail -n 60
grep -v Warning "$out/fast_weight.log" "$out/variants.log" | grep -v warn
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
if (out / "prefill_ab.json").exists():
    for run in json.loads((out / "prefill_ab.json").read_text())["runs"]:
        for name, v in run["variants"].items():
            print("prefill_ab", run["frames"], name, [round(s, 3) for s in v["prefill_s"]], round(v["peak_gib"], 2),
                  v["token"])
for f in sorted(out.glob("e2e*.json")):
    d = json.loads(f.read_text())
    for r in d["runs"]:
        print(f.stem, r["model"], r["frames"], {k: round(r[k], 3) for k in ("processor_s", "prefill_s", "vision_s",
              "decode_ms", "peak_gib") if isinstance(r.get(k), float)}, r.get("error", ""))
    for s in d["streams"]:
        print(f.stem, "stream", s.get("piece_frames"), round(s.get("frames_per_s", 0), 1), s.get("error", ""))
PY
