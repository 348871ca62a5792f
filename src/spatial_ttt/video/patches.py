"""Qwen3-VL video patchification in plain torch.

transformers' Qwen3VLVideoProcessor needs torchvision, which cannot be installed beside this torch
build. This class does the same math for frames that are already sampled and resized (the
qwen-vl-utils path calls the processor with do_resize=False): rescale+normalise fused the way
transformers fuses it, pad T to the temporal patch by repeating the last frame, and flatten patches
in Qwen3-VL's order (temporal group, merge-block row, merge-block col, row in block, col in block;
features C x temporal x patch x patch).

The output may be written in the vision tower's dtype and into pinned memory (``pixel_dtype``, ``pin_memory``;
:func:`pixel_target` gives both for a model): the tower casts its pixels to its dtype first, and a cast rounds the
same on the host as on the device, so its input is bit-identical, with half the bytes to copy at bf16 and copies
from pinned memory that run 4-10x faster than from pageable memory and overlap the tower's work
(benchmarks/bench_h2d.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import VideosKwargs
from transformers.video_processing_utils import VideoProcessorMixin

CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
ROWS_PER_BLOCK = 2048  # rows normalised at a time: a 12-MiB fp32 scratch that stays in cache


class TorchVideosKwargs(VideosKwargs, total=False):
    """What TorchVideoProcessor takes beyond transformers' video kwargs (Qwen3VLProcessor validates against it)."""

    pixel_dtype: torch.dtype
    pin_memory: bool


def pixel_target(dtype: torch.dtype, device: torch.device) -> dict:
    """Processor kwargs for pixels bound for a vision tower of ``dtype`` on ``device``: in that dtype, pinned when
    the tower is on CUDA."""
    return dict(pixel_dtype=dtype, pin_memory=device.type == "cuda")


class TorchVideoProcessor(VideoProcessorMixin):
    """Drop-in video processor for Qwen3VLProcessor (no resizing, no frame sampling)."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]
    valid_kwargs = TorchVideosKwargs

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

    def patchify(
        self, frames: torch.Tensor, pixel_dtype: torch.dtype = torch.float32, pin_memory: bool = False
    ) -> tuple[torch.Tensor, list[int]]:
        """uint8 [T, H, W, 3] -> (``pixel_dtype`` [grid_t*grid_h*grid_w, 3*tp*p*p], [grid_t, grid_h, grid_w]),
        in pinned memory if ``pin_memory``. Normalised in fp32 whatever ``pixel_dtype`` (then rounded once)."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        t, h, w, c = frames.shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"frame size {h}x{w} must be a multiple of {self.factor}; resize frames first")
        tp, p, m = self.temporal_patch_size, self.patch_size, self.merge_size
        if pad := -t % tp:
            frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
        frames = frames.contiguous()  # a view of a decoder's buffer (a crop, every other frame) may not be
        gt, gh, gw = frames.shape[0] // tp, h // p, w // p
        # patch order on the uint8 frames (a quarter of the bytes of moving fp32 pixels), then normalise rows in
        # blocks: per feature column its channel's (x - mean/scale) / (std/scale) in fp32, as transformers fuses it
        x = frames.view(gt, tp, gh // m, m, p, gw // m, m, p, c).permute(0, 2, 5, 3, 6, 8, 1, 4, 7)
        rows, width = gt * gh * gw, c * tp * p * p
        patches = x.reshape(rows, width)
        mean = (torch.tensor(self.image_mean) * (1.0 / self.rescale_factor)).repeat_interleave(width // c)
        std = (torch.tensor(self.image_std) * (1.0 / self.rescale_factor)).repeat_interleave(width // c)
        out = torch.empty(rows, width, dtype=pixel_dtype, pin_memory=pin_memory)
        scratch = torch.empty(min(ROWS_PER_BLOCK, rows), width)
        for start in range(0, rows, ROWS_PER_BLOCK):
            block = slice(start, min(start + ROWS_PER_BLOCK, rows))
            # in-place ops and a copy out: torch.div(..., out=) into a slice of ``out`` ran 10x slower on the CPU
            done = scratch[: block.stop - start].copy_(patches[block]).sub_(mean).div_(std)
            out[block].copy_(done)
        return out, [gt, gh, gw]

    def __call__(
        self,
        videos,
        video_metadata=None,
        return_metadata: bool = False,
        return_tensors=None,
        pixel_dtype: torch.dtype = torch.float32,
        pin_memory: bool = False,
        **_,
    ) -> BatchFeature:
        """Qwen3VLProcessor entry point: a list of uint8 [T, H, W, 3] videos -> pixel_values_videos, video_grid_thw."""
        videos = [videos] if isinstance(videos, torch.Tensor) else list(videos)
        outs = [self.patchify(torch.as_tensor(v), pixel_dtype, pin_memory) for v in videos]
        pixels = outs[0][0] if len(outs) == 1 else torch.cat([o[0] for o in outs])  # one video: no second copy
        if pin_memory and not pixels.is_pinned():
            pixels = pixels.pin_memory()
        data = {
            "pixel_values_videos": pixels,
            "video_grid_thw": torch.tensor([o[1] for o in outs]),
        }
        if return_metadata:
            data["video_metadata"] = video_metadata
        return BatchFeature(data=data, skip_tensor_conversion=["video_metadata"])
