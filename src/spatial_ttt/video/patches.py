"""Qwen3-VL video patchification in plain torch.

transformers' Qwen3VLVideoProcessor needs torchvision, which cannot be installed beside this torch
build. This class does the same math for frames that are already sampled and resized (the
qwen-vl-utils path calls the processor with do_resize=False): rescale+normalise fused the way
transformers fuses it, pad T to the temporal patch by repeating the last frame, and flatten patches
in Qwen3-VL's order (temporal group, merge-block row, merge-block col, row in block, col in block;
features C x temporal x patch x patch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.video_processing_utils import VideoProcessorMixin

CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


class TorchVideoProcessor(VideoProcessorMixin):
    """Drop-in video processor for Qwen3VLProcessor (no resizing, no frame sampling)."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(
        self,
        patch_size: int = 16,
        temporal_patch_size: int = 2,
        merge_size: int = 2,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        rescale_factor: float = 1 / 255,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.temporal_patch_size = temporal_patch_size
        self.merge_size = merge_size
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.rescale_factor = rescale_factor

    @classmethod
    def from_folder(cls, folder: str | Path) -> TorchVideoProcessor:
        """Read patch/normalisation settings from a Qwen3-VL folder's video (else image) preprocessor config."""
        for name in CONFIG_FILES:
            path = Path(folder) / name
            if path.is_file():
                cfg = json.loads(path.read_text())
                keys = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std", "rescale_factor")
                return cls(**{k: cfg[k] for k in keys if k in cfg})
        raise FileNotFoundError(f"no {' or '.join(CONFIG_FILES)} in {folder}")

    @property
    def factor(self) -> int:
        """Frame height and width must be multiples of this (patch x merge)."""
        return self.patch_size * self.merge_size

    def num_tokens(self, height: int, width: int) -> int:
        """LLM tokens per temporal group of a frame of this size (after the merge)."""
        return (height // self.patch_size) * (width // self.patch_size) // self.merge_size**2

    def patchify(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """uint8 [T, H, W, 3] -> (float32 [grid_t*grid_h*grid_w, 3*tp*p*p], [grid_t, grid_h, grid_w])."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [T, H, W, 3], got {tuple(frames.shape)}")
        t, h, w, c = frames.shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"frame size {h}x{w} must be a multiple of {self.factor}; resize frames first")
        # fused rescale + normalise, as transformers does it: (x - mean/scale) / (std/scale) in float32
        mean = torch.tensor(self.image_mean) * (1.0 / self.rescale_factor)
        std = torch.tensor(self.image_std) * (1.0 / self.rescale_factor)
        x = frames.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - mean[:, None, None]) / std[:, None, None]
        tp, p, m = self.temporal_patch_size, self.patch_size, self.merge_size
        if pad := -t % tp:
            x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
        gt, gh, gw = x.shape[0] // tp, h // p, w // p
        x = x.view(gt, tp, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return x.reshape(gt * gh * gw, c * tp * p * p), [gt, gh, gw]

    def __call__(self, videos, video_metadata=None, return_metadata: bool = False, return_tensors=None, **_) -> BatchFeature:
        """Qwen3VLProcessor entry point: a list of uint8 [T, H, W, 3] videos -> pixel_values_videos, video_grid_thw."""
        videos = [videos] if isinstance(videos, torch.Tensor) else list(videos)
        outs = [self.patchify(torch.as_tensor(v)) for v in videos]
        data = {
            "pixel_values_videos": torch.cat([o[0] for o in outs]),
            "video_grid_thw": torch.tensor([o[1] for o in outs]),
        }
        if return_metadata:
            data["video_metadata"] = video_metadata
        return BatchFeature(data=data, skip_tensor_conversion=["video_metadata"])
