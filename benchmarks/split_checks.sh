#!/usr/bin/env bash
# The next device call on "split" anchors (one GPU). Session 20 found their stage 0.10-0.15 s shorter at 1024
# frames but the TTT layers' stage 0.01-0.06 s longer in the same rounds, and no whole call faster. Two candidate
# causes, one measurement each: the GPU's clocks under cuDNN's heavier load (prefill_ab --clocks: SM clock, power,
# limiting reasons per timed call; needs nvidia-ml-py, carried as a wheel if the machine lacks it), and the host on
# the TTT layers' critical path once the anchors no longer let it run ahead (GPU idle by host stage under split;
# session 20's run of it did not finish in 160 s).
# bash benchmarks/split_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
python3 -c "import pynvml" 2>/dev/null || echo "no pynvml: clocks will not be recorded"
timeout 240 python3 benchmarks/prefill_ab.py --frames 1024 --variants now anchor_split --repeats 5 --stages --clocks \
    --out "$out/prefill_ab.json" > "$out/prefill_ab.log" 2>&1
grep -E "round" "$out/prefill_ab.log" | cut -c1-200
timeout 300 python3 benchmarks/profile_prefill.py --frames 1024 --top 12 --idle --anchor-attention split \
    --out "$out/idle_split.json" > "$out/idle_split.log" 2>&1
grep -A 30 '"gpu_idle_s"' "$out/idle_split.log" | cut -c1-160 | head -30
