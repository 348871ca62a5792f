"""Qwen3-VL 3D rope positions (temporal, height, width) that can continue from an earlier segment."""

from __future__ import annotations

import torch
from torch import Tensor


def rope_positions(
    mm_token_type_ids: Tensor,
    image_grid_thw: Tensor | None,
    video_grid_thw: Tensor | None,
    spatial_merge: int,
    start: Tensor,
) -> tuple[Tensor, Tensor]:
    """Positions [3, B, S] for tokens that follow ``start`` [B] (each row's next text position).

    Text tokens count up on all three axes. Each temporal group of a video (Qwen3-VL separates them with
    timestamps) and each image is a grid whose t/h/w positions start at the current position; the position
    then advances by max(h, w). Returns the positions and each row's next position.
    """
    batch, length = mm_token_type_ids.shape
    device = mm_token_type_ids.device
    grids = {1: _grid_iter(image_grid_thw, split_time=False), 2: _grid_iter(video_grid_thw, split_time=True)}
    positions = torch.zeros(3, batch, length, dtype=torch.long, device=device)
    next_start = start.clone()
    for row in range(batch):
        types = mm_token_type_ids[row].tolist()
        pos = int(start[row])
        i = 0
        while i < length:
            kind = types[i]
            if kind == 0:
                j = i
                while j < length and types[j] == 0:
                    j += 1
                positions[:, row, i:j] = torch.arange(pos, pos + j - i, device=device)
                pos += j - i
                i = j
                continue
            t, h, w = next(grids[kind], (0, 0, 0))
            h, w = h // spatial_merge, w // spatial_merge
            size = t * h * w
            if size == 0 or any(types[k] != kind for k in range(i, min(i + size, length))) or i + size > length:
                raise ValueError(f"row {row}: vision tokens at {i} do not match the given grid_thw")
            tt, hh, ww = torch.meshgrid(
                torch.arange(t, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
            )
            positions[:, row, i : i + size] = torch.stack([tt, hh, ww]).reshape(3, -1) + pos
            pos += max(h, w)
            i += size
        next_start[row] = pos
    for kind, it in grids.items():
        if next(it, None) is not None:
            raise ValueError(f"more {'image' if kind == 1 else 'video'} grids given than the prompt has")
    return positions, next_start


def _grid_iter(grid_thw: Tensor | None, split_time: bool):
    """Iterates grids; videos are split into one grid per temporal group, as Qwen3-VL lays them out."""
    for t, h, w in ([] if grid_thw is None else grid_thw.tolist()):
        if split_time:
            yield from ((1, h, w) for _ in range(t))
        else:
            yield (t, h, w)
