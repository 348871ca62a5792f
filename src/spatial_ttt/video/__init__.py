"""Video decoding and Qwen3-VL preprocessing for Spatial-TTT (see docs/video.md)."""

from .clip import VideoClip, VideoError
from .decode import read_video
from .frames import DEFAULT_SIZE, FrameGroup, group_frames, read_image_folder, resize_frames
from .processing import DEFAULT_SYSTEM_PROMPT, PromptPiece, SpatialTTTProcessor
from .sampling import num_sampled_frames, sample_indices
from .tiny import TINY_SPECIAL_IDS, make_tiny_processor

__all__ = [
    "DEFAULT_SIZE",
    "DEFAULT_SYSTEM_PROMPT",
    "TINY_SPECIAL_IDS",
    "FrameGroup",
    "PromptPiece",
    "SpatialTTTProcessor",
    "VideoClip",
    "VideoError",
    "group_frames",
    "make_tiny_processor",
    "num_sampled_frames",
    "read_image_folder",
    "read_video",
    "resize_frames",
    "sample_indices",
]
