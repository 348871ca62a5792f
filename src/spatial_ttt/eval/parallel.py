"""Where this process sits in a data-parallel launch (torchrun / accelerate launch), read from the variables
those launchers set: RANK, WORLD_SIZE, LOCAL_RANK. No process group is needed: shards share nothing but the
output folder (see runner.run_benchmark)."""

from __future__ import annotations

import os

from spatial_ttt.eval.errors import EvalError


def launcher_shard() -> tuple[int, int]:
    """(rank, world size) set by the launcher; (0, 1) when started directly."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise EvalError(f"RANK / WORLD_SIZE set by the launcher are not numbers: {os.environ.get('RANK')!r}, "
                        f"{os.environ.get('WORLD_SIZE')!r}") from None
    if not 0 <= rank < world:
        raise EvalError(f"RANK={rank} is not below WORLD_SIZE={world}")
    return rank, world


def default_device() -> str:
    """This process's GPU (cuda:LOCAL_RANK under a launcher, else cuda:0), or the CPU when there is none."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
