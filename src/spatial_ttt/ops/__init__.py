"""Kernels and reference operators. The fast-weight math lives in :mod:`spatial_ttt.ops.fast_weight`."""

from .fast_weight import (
    FastWeights,
    TokenStream,
    fast_weight_scan,
    fast_weight_update,
    newton_schulz5,
    swiglu_apply,
    swiglu_descent,
)

__all__ = [
    "FastWeights",
    "TokenStream",
    "fast_weight_scan",
    "fast_weight_update",
    "newton_schulz5",
    "swiglu_apply",
    "swiglu_descent",
]
