#!/usr/bin/env bash
# Session 24, second device call (one GPU): the conv stencil as _conv3_taps_kernel (each tap a whole [frames,
# tokens, channels] block, weights loaded once per program) against the frame-walking kernel, alone (bench_conv's
# sweep) and in a 1024-frame prompt (prefill_ab conv_taps / conv_taps_w8), bit for bit against it on CUDA; split
# anchors with 8,192-key tiles (split_keys_8k).
# Runs at commit f320cbb: the taps kernel and its variants were removed after this call (slower alone: 0.27-0.36
# against 0.23 ms per prompt piece; benchmarks/RESULTS.md, session 24).
# bash benchmarks/s24_call2.sh OUT_DIR  (PYTHONPATH: src, benchmarks and tests)
set -uo pipefail
out=$1; mkdir -p "$out"
timeout 60 python3 - > "$out/taps_equal.log" 2>&1 <<'PY'
import torch
import spatial_ttt.ops.conv_triton as ct
g = torch.Generator().manual_seed(0)
for shape in [(1, 97, 11, 15, 2048), (2, 5, 3, 4, 96), (1, 3, 1, 1, 8), (1, 12, 22, 30, 1024)]:
    frames = torch.randn(*shape, generator=g).cuda().bfloat16()
    weight = torch.randn(shape[-1], 1, 3, 3, 3, generator=g).cuda().bfloat16()
    a = ct.depthwise_conv3_triton(frames, weight)
    for tile in (dict(taps=1, block_hw=16, block_t=4), dict(taps=1, block_hw=32, block_t=4, num_warps=8)):
        b = ct.depthwise_conv3_triton(frames, weight, **tile)
        print(shape, tile, "equal", torch.equal(a, b), (a.float() - b.float()).abs().max().item())
PY
cat "$out/taps_equal.log" | tail -8
timeout 120 python3 benchmarks/bench_conv.py --repeat 20 --out "$out/conv.json" > "$out/conv.log" 2>&1
tail -n 3 "$out/conv.log" | cut -c1-160
timeout 240 python3 benchmarks/prefill_ab.py --frames 1024 --variants now conv_taps conv_taps_w8 split_keys_8k \
    --repeats 3 --stages --out "$out/prompt_ab.json" > "$out/prompt_ab.log" 2>&1
grep -E "round|peak" "$out/prompt_ab.log" | cut -c1-300
