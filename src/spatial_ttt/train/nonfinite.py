"""Where a NaN or infinity appears in a training step: which parameters' gradients (always checked, read on a
skipped step), and, with the ``trace_nonfinite`` setting, module outputs in the forward and their gradients in the
backward.

A skipped step (trainer.py) says which parameter gradients were not finite, but a NaN spreads: one bad value in a
layer's backward reaches every parameter below it. With this watch on, every module's output and the gradient
arriving at it are checked as the step runs; on a skipped step the trainer logs the first module (in execution
order) whose output, and the first whose incoming gradient, was not finite. The flags stay on the device until
then (no host sync per module), but each check is a kernel: a diagnostic setting, off by default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn


def first_tensor(value: Any) -> torch.Tensor | None:
    """The module output to check: the tensor itself, or the first tensor of a tuple/list (hidden states)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor)), None)
    return None


class GradientCheck(NamedTuple):
    """Which parameters' gradients are all finite (this process's shard), taken before clipping: a NaN total norm
    makes clipping multiply every gradient by NaN, after which the parameters that produced it cannot be told
    apart. The flags stay on the device; :meth:`report` (on a skipped step) reads them."""

    names: list[str]
    flags: torch.Tensor  # bool [n]

    @classmethod
    def of(cls, model: nn.Module) -> "GradientCheck":
        names, flags = [], []
        for name, param in model.named_parameters():
            if param.grad is not None:
                grad = param.grad.to_local() if hasattr(param.grad, "to_local") else param.grad  # FSDP2: DTensor shards
                names.append(name)
                flags.append(torch.isfinite(grad.sum()))  # a reduction: no gradient-sized bool mask
        return cls(names, torch.stack(flags) if flags else torch.ones(0, dtype=torch.bool))

    def report(self) -> dict[str, Any]:
        """How many of how many gradients were not finite, the first such names, and up to 40 finite ones (a NaN
        spreads down the backward pass: the finite ones lie between the loss and where it arose)."""
        ok = self.flags.tolist()
        bad = [name for name, fine in zip(self.names, ok) if not fine]
        return {"count": len(bad), "of": len(self.names), "first": bad[:8],
                "finite": [name for name, fine in zip(self.names, ok) if fine][:40]}


class NonFiniteWatch:
    """Forward hooks on every named submodule of ``model`` recording, per call, whether its output is finite and
    (through a tensor hook) whether the gradient flowing into that output is; :meth:`report` names the first
    failures, :meth:`reset` starts the next step."""

    def __init__(self, model: nn.Module) -> None:
        self.forward: list[tuple[str, torch.Tensor]] = []  # (module, output all finite), in forward order
        self.backward: list[tuple[str, torch.Tensor]] = []  # (module, its output's gradient all finite), backward order
        for name, module in model.named_modules():
            if name:  # submodules (the root returns a ModelOutput, not a tensor)
                module.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = first_tensor(output)
            # inside a compiled function (a vision block, the fast-weight kernel) hooks cannot register gradient
            # hooks: such modules are covered by the module that calls the function
            if out is None or not out.is_floating_point() or torch.compiler.is_compiling():
                return
            self.forward.append((name, torch.isfinite(out.detach().sum())))  # NaN/inf carry through a sum
            if out.requires_grad:
                out.register_hook(lambda grad: self.backward.append((name, torch.isfinite(grad.sum()))) or None)

        return hook

    def reset(self) -> None:
        self.forward.clear()
        self.backward.clear()

    def report(self) -> dict[str, Any]:
        """{"forward_first": module or None, "backward_first": module or None, "forward_bad": n, "backward_bad": n}
        over the calls since :meth:`reset` (reads the flags: one host sync)."""
        out: dict[str, Any] = {}
        for key, calls in (("forward", self.forward), ("backward", self.backward)):
            flags = torch.stack([ok for _, ok in calls]).tolist() if calls else []
            bad = [name for (name, _), ok in zip(calls, flags) if not ok]
            out[f"{key}_first"] = bad[0] if bad else None
            out[f"{key}_bad"] = len(bad)
        return out
