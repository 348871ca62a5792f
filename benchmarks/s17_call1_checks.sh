#!/usr/bin/env bash
# Session 17's first device call (one H200): a user's first minutes in a fresh process, step by step, with the
# inference stages compiled as the library does (static, then dynamic; one compiled copy per kind of input since
# session 17) and with symbolic sizes from the first call (first_answer.py: each in its own cold process); then
# the compile-touching GPU tests with the per-kind compiled stages.
# bash benchmarks/s17_call1_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail  # no -e: each job's result is kept even where another failed
out=$1; mkdir -p "$out"
timeout 420 python3 benchmarks/first_answer.py --dynamic auto true --out "$out/first_answer.json" \
    > "$out/first_answer.log" 2>&1
timeout 120 python3 -m pytest -v -rf -p no:cacheprovider --tb=short tests/gpu/test_norm_gpu.py \
    tests/gpu/test_rope_gpu.py tests/gpu/test_stream_device.py > "$out/gpu_tests.log" 2>&1
grep -E "PASSED|FAILED|passed|failed" "$out/gpu_tests.log" | tail -n 20
python3 - "$out" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1]) / "first_answer.json"
if path.exists():
    for run in json.loads(path.read_text())["runs"]:
        print(run["dynamic"], run.get("error", "")[-600:])
        for s in run.get("steps", []):
            print(f'  {s["step"]:20s} {s["seconds"]:8.3f} s  {s["graphs"]:3d} graphs')
PY
