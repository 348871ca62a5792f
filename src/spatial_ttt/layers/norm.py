"""The decoder's RMSNorm: Qwen3-VL's, run as one fused kernel where the model runs its graphed kernel.

Eager, one RMSNorm is seven kernels over fp32 copies of its input (cast, square, mean, rsqrt, scale, cast back,
weight). A prefill normalises every token about four times per layer (input, post-attention, per-head q and k),
which the session-9 profile put at ~11 % of a 128-frame prefill's GPU time on an H100 (pow 6.0 ms, mean 4.6 ms
plus the casts and products, against 0.30 s) and ~0.27 s of a 1024-frame one (benchmarks/RESULTS.md). Compiled,
it is one pass that reads and writes bf16.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Qwen3VLTextRMSNorm.forward as a function of tensors (what the kernel compiles): fp32 statistics, the
    normalised rows cast back to x's dtype, then the weight."""
    rows = x.to(torch.float32)
    rows = rows * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + eps)
    return weight * rows.to(x.dtype)


class RMSNorm(Qwen3VLTextRMSNorm):
    """Qwen3-VL's RMSNorm (same parameter, same numbers on the CPU). ``kernel``, the model's FastWeightKernel (set by
    the model), compiles it where it runs the graphed kernel (CUDA, no autograd: FastWeightKernel.fused_for_inference);
    elsewhere, and inside a function being compiled as a whole (a static decode layer), it is traced as it is."""

    kernel = None

    def forward(self, x: Tensor) -> Tensor:
        run = rms_norm if self.kernel is None else self.kernel.fused_for_inference(rms_norm, x)
        return run(x, self.weight, self.variance_epsilon)
