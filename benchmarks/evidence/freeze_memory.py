"""A copy of a model folder whose fast weights never change: every TTT layer's update rates are made zero, so each
token is answered by the learnt initial fast weights (the branch still runs as a fixed MLP on the current token),
and nothing seen earlier in the stream reaches later tokens through the fast weights. Scoring the copy beside the
model (score_cpu.py) asks whether the model's answers use its fast-weight memory.

python benchmarks/evidence/freeze_memory.py MODEL_DIR OUT_DIR

The rates are softplus(lr_proj(x) + offset) (layers/ttt.py ``branch_prologue``): lr_proj's weight is set to zero
and its bias to -100, so every rate is below 1e-40 and each update is zero to fp32 precision (what still moves the
weights is the renormalisation after each update, w / (|w| + 1e-5) * |w0|: a relative 1e-5 per chunk).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from spatial_ttt.checkpoint import copy_processor_files, load_model, save_model

FROZEN_BIAS = -100.0


def freeze(model: torch.nn.Module) -> int:
    """Zeroes the update rates of every TTT layer with a fast-weight branch; returns how many layers (0 when the
    model's branch is off: its fast weights answer nothing)."""
    if not model.config.ttt_branch:
        return 0
    ttt = [layer.self_attn for layer in model.model.language_model.layers if layer.is_ttt]
    with torch.no_grad():
        for mixer in ttt:
            mixer.lr_proj.weight.zero_()
            mixer.lr_proj.bias.fill_(FROZEN_BIAS)
    return len(ttt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    model = load_model(args.model).eval()
    frozen = freeze(model)
    if not frozen:
        raise SystemExit(f"{args.model} has no TTT layer with a fast-weight branch: nothing to freeze")
    save_model(model, args.out)
    copy_processor_files(args.model, args.out)
    print(f"{args.out}: {frozen} TTT layers with zero update rates")


if __name__ == "__main__":
    main()
