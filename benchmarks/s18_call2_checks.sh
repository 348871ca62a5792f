#!/usr/bin/env bash
# Session 18's second device call (one H200): the GPU tests of graphed decoding with the step's layers compiled per
# kind (call 1 ran 3 of 7 before its limit), then a fresh process up to its first long answer with the first
# question's prefill under torch.profiler and every Triton compilation timed (first_answer.py), to find the 7.5-10 s
# that question takes with no dynamo graph compiled.
# bash benchmarks/s18_call2_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 290 python3 -m pytest -v -rf -p no:cacheprovider --tb=short --durations=0 tests/gpu/test_decode_graph.py \
    > "$out/test_decode_graph.log" 2>&1
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/test_decode_graph.log" | tail -n 12
timeout 230 python3 benchmarks/first_answer.py --dynamic auto --child-timeout-s 215 --pieces 3 \
    --stop-after ask_decode_long --profile-steps ask_prefill --out "$out/first_answer.json" > "$out/first_answer.log" 2>&1
python3 - "$out" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1]) / "first_answer.json"
if path.exists():
    for run in json.loads(path.read_text())["runs"]:
        print(run["dynamic"], run.get("error", ""))
        for s in run.get("steps", []):
            extra = f'  {s["decode_ms_per_token"]:.2f} ms/token' if "decode_ms_per_token" in s else ""
            setup = s.get("decode", {}).get("setup_s")
            extra += f'  decode setup {setup:.3f} s' if setup is not None else ""
            print(f'  {s["step"]:20s} {s["seconds"]:8.3f} s  {s["graphs"]:3d} graphs  triton {s.get("triton_compiles", 0)}'
                  f' ({s.get("triton_compile_s", 0):.2f} s){extra}')
PY
