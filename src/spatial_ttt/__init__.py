"""Spatial-TTT: streaming spatial intelligence with test-time training on Qwen3-VL."""

from .checkpoint import CheckpointError, convert_qwen3vl, load_model, load_reference_checkpoint, save_model
from .configuration import SpatialTTTConfig
from .models import SpatialTTTForConditionalGeneration
from .state import ModelState
from .streaming import StaleSnapshotError, StreamError, StreamSession

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ModelState",
    "SpatialTTTConfig",
    "SpatialTTTForConditionalGeneration",
    "StaleSnapshotError",
    "StreamError",
    "StreamSession",
    "convert_qwen3vl",
    "load_model",
    "load_reference_checkpoint",
    "save_model",
]
