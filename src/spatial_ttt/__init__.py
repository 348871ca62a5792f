"""Spatial-TTT: streaming spatial intelligence with test-time training on Qwen3-VL.

The public names are imported on first use (PEP 562), so that `spatial-ttt --help` and the CLI's argument
errors do not wait for torch and transformers to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": ".checkpoint",
    "convert_qwen3vl": ".checkpoint",
    "load_model": ".checkpoint",
    "load_reference_checkpoint": ".checkpoint",
    "save_model": ".checkpoint",
    "SpatialTTTConfig": ".configuration",
    "SpatialTTTForConditionalGeneration": ".models",
    "ModelState": ".state",
    "StaleSnapshotError": ".streaming",
    "StreamError": ".streaming",
    "StreamSession": ".streaming",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, convert_qwen3vl, load_model, load_reference_checkpoint, save_model
    from .configuration import SpatialTTTConfig
    from .models import SpatialTTTForConditionalGeneration
    from .state import ModelState
    from .streaming import StaleSnapshotError, StreamError, StreamSession


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spatial_ttt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
