"""GPU path of the TTT layer's fast-weight branch around the operator: its elementwise pre/post processing.

Why: per TTT layer the branch turns the [S, 2048] q/k/v of the attention projections into the operator's
per-head rows (q/k scale + offset, KV-head expansion, silu, L2 norm, partial rope, reshape to [B*nh, S, d],
fp32) and its output back (ttt_norm, silu gate, merge of the heads, cast). Eagerly that is ~25 separate
passes over [S, 2048] per layer, which the prefill profile at 512 frames put at ~0.45 s of 1.15 s (H100, see
benchmarks/RESULTS.md). ``torch.compile`` fuses each stage into a few memory-bound kernels.

The math is not repeated here: :mod:`spatial_ttt.layers.ttt` holds it as plain functions
(``fast_weight_inputs``, ``branch_prologue``, ``branch_epilogue``), which CPU tensors run as they are and CUDA
tensors run through the compiled wrapper of the same function (autograd included, for training).
``SPATIAL_TTT_BRANCH=eager`` or ``SPATIAL_TTT_NO_COMPILE=1`` keeps the eager functions on CUDA too.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor

_COMPILED: dict[Callable, Callable] = {}


def use_compiled_branch(t: Tensor) -> bool:
    if not t.is_cuda:
        return False
    return os.environ.get("SPATIAL_TTT_BRANCH", "compiled") != "eager" and os.environ.get("SPATIAL_TTT_NO_COMPILE") != "1"


def compiled(fn: Callable) -> Callable:
    """torch.compile'd ``fn`` (once per process). Shapes are left to dynamo's automatic dynamic shapes: the
    first call compiles for its sequence length, a second length recompiles once with the length symbolic
    (prefill, streaming pieces and one-token decoding then share it)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, fullgraph=True)
    return _COMPILED[fn]


def dispatch(fn: Callable, t: Tensor) -> Callable:
    """``fn`` itself for CPU tensors (the reference math, unchanged), its compiled wrapper for CUDA tensors."""
    return compiled(fn) if use_compiled_branch(t) else fn
