"""Training (SFT) of Spatial-TTT: config, data and packing, parameter groups, the accelerate loop, the CLI.

Names are imported on first use, so that the `spatial-ttt` command can register `train` without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": ".config", "load_config": ".config",
    "PackDataset": ".data", "PackSampler": ".data", "SFTEncoder": ".data", "make_packs": ".data",
    "read_records": ".data",
    "build_optimizer": ".optim", "build_scheduler": ".optim", "parameter_groups": ".optim", "parameter_kind": ".optim",
    "pack_loss": ".packing", "sequence_loss_sum": ".packing",
    "Trainer": ".trainer", "TrainingDiverged": ".trainer", "train": ".trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spatial_ttt.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
