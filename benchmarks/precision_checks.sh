#!/usr/bin/env bash
# What the reference-exact mode costs on the user's path, and what a TF32 mode would buy back (issue 16 asks for
# it, measured), in one device call (one GPU): the 1024- and 128-frame prompts with bf16 fast-weight products (the
# fast mode), fp32 products (the release's evaluation setting) and fp32 products with TF32 tensor cores allowed,
# in interleaved rounds of one process, with stage times; each variant's first token beside its time.
# bash benchmarks/precision_checks.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 400 python3 benchmarks/prefill_ab.py --frames 1024 128 --variants now products_fp32 products_tf32 \
    --repeats 4 --stages --out "$out/precision_ab.json" > "$out/precision_ab.log" 2>&1
grep -E "round|token" "$out/precision_ab.log" | cut -c1-240
