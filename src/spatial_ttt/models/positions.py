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
    # every token's positions are written below; a grid's [3, t*h*w] offsets are made once per grid size (a
    # long video repeats one size: a 16k-token piece of 95 frame groups took 21 ms of host time before, while the
    # GPU waited for its layers)
    positions = torch.empty(3, batch, length, dtype=torch.long, device=device)
    offsets: dict[tuple[int, int, int], Tensor] = {}
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
            if size == 0 or i + size > length or types[i : i + size].count(kind) != size:
                raise ValueError(f"row {row}: vision tokens at {i} do not match the given grid_thw")
            if (t, h, w) not in offsets:
                axes = (torch.arange(n, device=device) for n in (t, h, w))
                offsets[t, h, w] = torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(3, -1)
            positions[:, row, i : i + size] = offsets[t, h, w] + pos
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
