"""torch.compile, one compiled function per kind of input, so that no code object runs out of recompiles.

Dynamo keeps the graphs it compiles for a function per code object and guards each graph on what it assumed of
the inputs: besides sizes, whether a tensor is a view (``_base``), its strides and storage offset, which sizes are
0 or 1 (always specialised), dtype, device, inference tensor or not, grad mode, and the values of flags. A function
given all of these kinds at once recompiles for each, and past dynamo's recompile limit (8 per code object) a
``fullgraph`` function raises. A model's stages see many of them in ordinary use: contiguous rows and slices of
rows, one token and many, a batch of 1 and of 2, no_grad and inference_mode callers (a tiny model streamed with
batch 1 and then batch 2 hit the limit in the decoder's norm: tests/core/test_compiled.py). :class:`Compiled`
keeps one private copy of the function per kind of input (:func:`input_kind`), so each copy sees one kind and only
recompiles for new sizes: once, from static to dynamic (dynamo's automatic dynamic shapes), or never with
``dynamic=True``.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Callable

import torch
from torch import Tensor


def private_copy(fn: Callable) -> Callable:
    """``fn`` with a code object of its own. Dynamo keeps compiled variants, and counts its recompile limit, per
    code object: a private copy keeps callers (models, kinds of input) from using up each other's."""
    return FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def input_kind(arg: Any) -> Any:
    """What dynamo guards on in ``arg`` other than sizes above 1: for a tensor its dtype, device, whether it is an
    inference tensor, needs grad, is a view, is contiguous, its storage offset (0, 1 or more) and its sizes capped
    at 2 (rank and the 0/1 sizes dynamo specialises); for a sequence, its items' kinds; an int as 0, 1 or more (a
    count such as frames per call must not make a new copy per value); other flags by value; anything else (a
    module) by type."""
    if isinstance(arg, Tensor):
        return (arg.dtype, arg.device.type, arg.is_inference(), arg.requires_grad, arg._base is not None,
                arg.is_contiguous(), min(arg.storage_offset(), 2), tuple(min(size, 2) for size in arg.shape))
    if isinstance(arg, (tuple, list)):
        return tuple(input_kind(item) for item in arg)
    if isinstance(arg, int) and not isinstance(arg, bool):
        return int, min(arg, 2)
    if arg is None or isinstance(arg, (bool, float, str, torch.dtype)):
        return arg
    return type(arg)


class Compiled:
    """``fn`` through ``torch.compile(fullgraph=True, dynamic=dynamic)``, one private copy per kind of its
    arguments (:func:`input_kind`) and grad mode. ``dynamic``: torch.compile's (None: static, then symbolic sizes
    after a second size; True: symbolic from the first call)."""

    def __init__(self, fn: Callable, dynamic: bool | None = None) -> None:
        self.fn, self.dynamic = fn, dynamic
        self.variants: dict[tuple, Callable] = {}

    def __call__(self, *args: Any) -> Any:
        key = (torch.is_grad_enabled(), input_kind(args))
        compiled = self.variants.get(key)
        if compiled is None:
            compiled = self.variants[key] = torch.compile(private_copy(self.fn), fullgraph=True, dynamic=self.dynamic)
        return compiled(*args)

    def __repr__(self) -> str:
        return f"Compiled({self.fn.__name__}, dynamic={self.dynamic}, variants={len(self.variants)})"
