"""Parameter groups (TTT / backbone LLM / vision), AdamW and the cosine schedule with a floor."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..models.modeling import is_ttt_parameter
from .config import TrainConfig


# Parameters a TTT layer adds that the reference nevertheless trains at the backbone rate: its lact_lr keyword list
# (w0, w1, w2, lr_proj, q/k scale/offset, ttt_scale_proj, ttt_norm, momentum_proj) has no conv.
BACKBONE_RATE_TTT_MODULES = frozenset({"conv_q", "conv_k", "conv_v"})


def parameter_kind(name: str, ttt_layers: set[int]) -> str:
    """'vision' (model.visual.*: tower and mergers), 'ttt' (what a TTT layer adds: everything under
    ``.self_attn.`` except the pretrained ``attn_layer``, trained at ``lact_lr``), 'conv' (the TTT layers'
    conv_q/k/v, added like 'ttt' but trained at ``lr``) or 'llm' (the rest of the language model + lm_head)."""
    if name.startswith("model.visual."):
        return "vision"
    if is_ttt_parameter(name, ttt_layers):
        return "conv" if name.split(".")[5] in BACKBONE_RATE_TTT_MODULES else "ttt"
    return "llm"


def decays(name: str) -> bool:
    """Weight decay except on biases and norm weights (as HF Trainer's default grouping)."""
    if name.endswith(".bias"):
        return False
    module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return "norm" not in module


def configure_trainable(model: nn.Module, config: TrainConfig) -> dict[str, int]:
    """Freezes the vision tower (default) and, with freeze_llm, the backbone (not the convs: the TTT layers add
    them); returns trainable counts per kind."""
    ttt_layers = set(model.config.ttt_layers)
    counts = {"ttt": 0, "conv": 0, "llm": 0, "vision": 0}
    for name, param in model.named_parameters():
        kind = parameter_kind(name, ttt_layers)
        trainable = not ((kind == "vision" and config.freeze_vision) or (kind == "llm" and config.freeze_llm))
        param.requires_grad_(trainable)
        if trainable:
            counts[kind] += param.numel()
    return counts


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: (ttt | conv | llm | vision) x (decay | no decay), trainable parameters only, empty groups
    left out."""
    ttt_layers = set(model.config.ttt_layers)
    lrs = {
        "ttt": config.lact_lr,
        "conv": config.lr,
        "llm": config.lr,
        "vision": config.lr if config.vision_lr is None else config.vision_lr,
    }
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        kind = parameter_kind(name, ttt_layers)
        decay = decays(name)
        group = groups.setdefault(
            (kind, decay),
            {"params": [], "names": [], "lr": lrs[kind], "weight_decay": config.weight_decay if decay else 0.0, "kind": kind},
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    groups = [{k: v for k, v in g.items() if k != "names"} for g in parameter_groups(model, config)]
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(groups, betas=tuple(config.adam_betas), eps=config.adam_eps)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warmup from 0, then cosine from 1 down to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = math.ceil(config.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup, config.min_lr_ratio)
    )
