#!/usr/bin/env bash
# Session 24, third device call (one GPU): the vision MLP's GELU in its GEMM's epilogue (linear_gelu_tanh) and the
# fast-weight norms kept in the graphed step's buffers: their GPU tests, then a 1024-frame prompt A/B (gelu_apart
# = the former vision MLP; split_keys_8k again, call 2's machine was too noisy to read it).
# bash benchmarks/s24_call3.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 150 python3 -m pytest -q tests/core/test_vision_attention.py tests/core/test_kernels.py \
    tests/gpu/test_gpu_paths.py -k "gelu or patch or frames_in_one or kernels_match or bf16_precision or graph_buffers or cuda" \
    > "$out/gpu_tests.log" 2>&1
tail -3 "$out/gpu_tests.log"
timeout 200 python3 benchmarks/prefill_ab.py --frames 1024 --variants now gelu_apart split_keys_8k \
    --repeats 3 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-300
