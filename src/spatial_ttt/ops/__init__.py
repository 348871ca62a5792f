"""The fast-weight operator: reference math (:mod:`.fast_weight`), interchangeable kernels of its chunk step
(:mod:`.fast_weight_kernels`, chosen by ``config.ttt_kernel``) and the memory that runs the chunk loop
(:mod:`.fast_weight_memory`)."""

from .fast_weight import (
    FastWeights,
    TokenStream,
    chunk_step,
    fast_weight_update,
    newton_schulz5,
    row_dtype,
    swiglu_apply,
    swiglu_descent,
)
from .fast_weight_kernels import FastWeightKernel
from .fast_weight_memory import FastWeightMemory

__all__ = [
    "FastWeightKernel",
    "FastWeightMemory",
    "FastWeights",
    "TokenStream",
    "chunk_step",
    "fast_weight_update",
    "newton_schulz5",
    "row_dtype",
    "swiglu_apply",
    "swiglu_descent",
]
