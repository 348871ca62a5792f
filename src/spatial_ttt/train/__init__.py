"""Training (SFT) of Spatial-TTT: config, data and packing, parameter groups, the accelerate loop, the CLI."""

from .config import TrainConfig, load_config
from .data import PackDataset, PackSampler, SFTEncoder, make_packs, read_records
from .optim import build_optimizer, build_scheduler, parameter_groups, parameter_kind
from .packing import pack_loss, sequence_loss_sum
from .trainer import Trainer, train

__all__ = [
    "PackDataset", "PackSampler", "SFTEncoder", "TrainConfig", "Trainer", "build_optimizer", "build_scheduler",
    "load_config", "make_packs", "pack_loss", "parameter_groups", "parameter_kind", "read_records",
    "sequence_loss_sum", "train",
]
