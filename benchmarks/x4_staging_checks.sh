#!/usr/bin/env bash
# One call on a 4-GPU host (session 14, ~7 minutes from cold), one job per GPU: GPU 0 the GPU tests in full, in
# their usual order (a test of test_decode_graph.py failed there after 55 passing tests in sessions 13 and 14);
# GPU 1 test_decode_graph.py alone with dynamo's recompile limit at 2 (the failing test's log showed rms_norm
# hitting the limit of 8: does a hit limit make it fail?), then the host-pixel tests; GPUs 2 and 3 bench_e2e at
# 128 and 1024 frames with the pixels in pageable host memory (as the pipeline leaves them; in this call staged
# through pinned blocks by spatial_ttt/transfer.py, which was measured slower and taken out again, so the script
# now times the plain pageable copy), pinned, and on the GPU, in one process each (two replicates).
# bash benchmarks/x4_staging_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
nvidia-smi --query-gpu=index,name --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 timeout 480 python3 -m pytest -x -q -p no:cacheprovider -p no:logging --tb=long \
    -o faulthandler_timeout=150 tests/gpu > "$out/gpu_tests.log" 2>&1 &
(CUDA_VISIBLE_DEVICES=1 timeout 240 python3 -c "import sys, pytest, torch._dynamo as dynamo
dynamo.config.recompile_limit = 2
sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:logging', '--tb=long', 'tests/gpu/test_decode_graph.py']))" \
    > "$out/decode_limit.log" 2>&1
 CUDA_VISIBLE_DEVICES=1 timeout 200 python3 -m pytest -q -p no:cacheprovider --tb=short tests/gpu/test_host_pixels.py \
    > "$out/host_pixels.log" 2>&1) &
for gpu in 2 3; do
  CUDA_VISIBLE_DEVICES=$gpu timeout 470 python3 benchmarks/bench_e2e.py --frames 128 1024 --precisions bf16 \
      --models ours --pixels host pinned device --decode-tokens 16 --stream-frames 128 --piece-frames 32 \
      --budget-s 420 --out "$out/e2e_pixels_$gpu.json" > "$out/e2e_pixels_$gpu.log" 2>&1 &
done
wait
tail -n 5 "$out/gpu_tests.log"; tail -n 3 "$out/decode_limit.log" "$out/host_pixels.log"
grep -h -o '"frames": [0-9]*\|"pixels": "[a-z]*"\|"prefill_s": [0-9.]*\|"vision_s": [0-9.]*\|"peak_gib": [0-9.]*' \
    "$out"/e2e_pixels_*.log | paste -sd' ' | sed 's/"frames"/\n"frames"/g'
touch "$out/done"
