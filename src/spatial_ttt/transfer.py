"""Host-to-GPU copies of large inputs (video pixels) that do not stall the GPU's queue.

A copy from pageable host memory is synchronous for the host: CUDA stages it through a small pinned buffer of its
own at a few GB/s, after the GPU has finished the work queued before it. Measured on an H100 (benchmarks/RESULTS.md,
session 14): the vision tower on pageable pixels took 0.131 s at 128 frames and 1.03 s at 1024 frames, on pinned or
device pixels 0.085 s and 0.69-0.72 s. Here the rows go through pinned blocks of our own (torch's caching host
allocator keeps them for the next call) with asynchronous copies: the host fills block i+1 while block i crosses,
and returns before the data has arrived, so it can queue the work that follows.
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK_BYTES = 32 << 20  # per pinned block: large enough for full copy bandwidth, small enough to pipeline


def to_device(t: Tensor, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """``t`` on ``device`` (cast to ``dtype`` there, if given: a cast on the host would run on the CPU). From
    pageable host memory to a GPU the copy is staged through pinned blocks of rows, asynchronously; anything else
    is ``t.to(device, non_blocking=True)``. Numbers are unchanged: the same bytes arrive and are cast on the device."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu" or t.is_pinned() or t.dim() == 0 or t.numel() == 0:
        out = t.to(device, non_blocking=True)
    else:
        out = torch.empty(t.shape, dtype=t.dtype, device=device)
        rows = max(BLOCK_BYTES // max(t[0].numel() * t.element_size(), 1), 1)
        for start in range(0, t.shape[0], rows):
            # the pinned block is handed back when this line ends; the allocator reuses it only after the copy
            # that reads it has finished (it records an event on the copy's stream)
            out[start : start + rows].copy_(t[start : start + rows].pin_memory(), non_blocking=True)
    return out if dtype is None else out.to(dtype)
