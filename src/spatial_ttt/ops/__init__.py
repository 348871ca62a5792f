"""Kernels and reference operators. The fast-weight math lives in :mod:`spatial_ttt.ops.fast_weight`.

``fast_weight_scan`` here is the one dispatch point: CUDA tensors take the GPU path
(:mod:`spatial_ttt.ops.fast_weight_gpu`: bf16 products, fp32 fast weights, compiled chunk step); everything
else, or ``SPATIAL_TTT_FAST_WEIGHT=reference``, runs the reference.
"""

import os

from torch import Tensor

from . import fast_weight as _reference
from .fast_weight import (
    FastWeights,
    TokenStream,
    fast_weight_update,
    newton_schulz5,
    swiglu_apply,
    swiglu_descent,
)


def use_gpu_path(q: Tensor) -> bool:
    return q.is_cuda and os.environ.get("SPATIAL_TTT_FAST_WEIGHT", "auto") != "reference"


def fast_weight_scan(
    weights: FastWeights, q: Tensor, tokens: TokenStream, num_pending: int, chunk_size: int, use_muon: bool
) -> tuple[Tensor, FastWeights, int]:
    """Same contract as :func:`spatial_ttt.ops.fast_weight.fast_weight_scan`; picks the GPU path on CUDA."""
    if use_gpu_path(q):
        from .fast_weight_gpu import fast_weight_scan_gpu

        return fast_weight_scan_gpu(weights, q, tokens, num_pending, chunk_size, use_muon)
    return _reference.fast_weight_scan(weights, q, tokens, num_pending, chunk_size, use_muon)


__all__ = [
    "FastWeights",
    "TokenStream",
    "fast_weight_scan",
    "fast_weight_update",
    "newton_schulz5",
    "swiglu_apply",
    "swiglu_descent",
    "use_gpu_path",
]
