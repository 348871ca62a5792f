#!/usr/bin/env bash
# Session 16's third device call (one H200: the 2-GPU kind was no longer lent), one job after another: the graphed
# decode's GPU tests (call 2's limit ended them after 4 of test_decode_graph.py) and host pixels, with the weights
# now resident in the graphed step; where the operator's time goes (bench_fast_weight.py --profile: GPU busy and
# idle inside one prefill, top kernels); then the user's path at 1024 frames, ours and plain Qwen3-VL in one
# process, as far as the time allows.
# bash benchmarks/x2_call3_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
timeout 250 python3 -m pytest -v -rf -p no:cacheprovider --tb=short tests/gpu/test_decode_graph.py \
    tests/gpu/test_host_pixels.py > "$out/gpu_tests.log" 2>&1
timeout 90 python3 benchmarks/bench_fast_weight.py --kernels graphed --profile \
    --out "$out/fast_weight_profile.json" > "$out/fast_weight_profile.log" 2>&1
timeout 180 python3 benchmarks/bench_e2e.py --frames 1024 --precisions bf16 --models ours plain \
    --pixels pipeline --decode-tokens 16 --stream-frames 256 --piece-frames 128 --repeats 3 --budget-s 160 \
    --out "$out/e2e_1024.json" > "$out/e2e.log" 2>&1
grep -E "PASSED|FAILED|passed|failed" "$out/gpu_tests.log" | tail -n 30
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
if (out / "fast_weight_profile.json").exists():
    for r in json.loads((out / "fast_weight_profile.json").read_text())["runs"]:
        print(r["precision"], round(r["seconds"] * 1e3, 2), "ms", round(r["tflops_per_s"], 1), "TFLOP/s", r.get("profile"))
for f in sorted(out.glob("e2e*.json")):
    d = json.loads(f.read_text())
    for r in d["runs"]:
        print(f.stem, r["model"], r["frames"], {k: round(r[k], 3) for k in ("processor_s", "prefill_s", "vision_s",
              "decode_ms", "peak_gib") if isinstance(r.get(k), float)}, r.get("prefill_s_all"), r.get("error", ""))
PY
