"""Training settings: one dataclass, read from YAML, every field overridable as ``key=value``."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainConfig:
    # model and processor
    model: str = "tiny"  # a Spatial-TTT folder, a Qwen3-VL folder (converted on load) or "tiny" (random, for tests)
    model_settings: dict[str, Any] = field(default_factory=dict)  # TTT settings for Qwen3-VL conversion / tiny
    processor: str | None = None  # processor folder; None: the model folder; "tiny": the tiny test processor
    system_prompt: str | None = None  # None: no system turn, as the reference's SFT messages
    # data
    data_path: str = "."  # root of the records' relative video paths
    data_files: list[str] = field(default_factory=lambda: ["sft/*.jsonl"])  # globs under data_path (JSONL or JSON list)
    num_frames: int | None = None  # fixed frame count per video; None: sample at `fps`
    fps: float | None = 2.0
    max_frames: int = 128
    min_frames: int = 16
    frame_size: list[int] = field(default_factory=lambda: [352, 480])  # (H, W)
    max_length: int = 65536  # token budget of one pack (and the longest sequence kept)
    packing: bool = True
    pack_rows: bool = False  # a pack's sequences as right-padded rows of one forward (same loss; for small models)
    pack_row_multiple: int = 1  # with pack_rows: blank rows added up to a multiple of this (few shapes to compile)
    num_workers: int = 4  # DataLoader workers (capped to the cores available, one left for the loop)
    # optimisation
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    grad_accum: int = 1  # packs per optimizer step per process
    lr: float = 1e-6  # backbone LLM
    lact_lr: float = 1e-5  # TTT parameters
    vision_lr: float | None = None  # only with freeze_vision: false (None: lr)
    freeze_vision: bool = True
    freeze_llm: bool = False  # train TTT parameters only
    weight_decay: float = 0.01
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.01
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    # a step whose loss or gradient norm is not finite updates nothing (logged as skipped); more than this many such
    # steps in a row stop the run with an error (the weights are those of the last finite step)
    max_skipped_steps: int = 5
    # diagnostic: check every module's output and incoming gradient; a skipped step then names the first module
    # where a NaN/inf appeared in the forward and in the backward (train/nonfinite.py; a kernel per module call)
    trace_nonfinite: bool = False
    # precision, memory, parallelism
    bf16: bool = True
    gradient_checkpointing: bool = True
    strategy: str = "auto"  # auto | ddp | fsdp  (auto: fsdp when launched on several CUDA processes, else ddp)
    fsdp_reshard_after_forward: bool = False  # False: ZeRO-2-like (shard grads + optimizer); True: ZeRO-3-like
    # bookkeeping
    output_dir: str = "runs/spatial-ttt"
    seed: int = 42
    logging_steps: int = 1
    progress_every_s: float = 10.0  # a progress line inside steps that run longer than this (CPU, long packs)
    save_steps: int = 500
    save_total_limit: int | None = 2
    resume: str | None = "auto"  # auto: latest checkpoint in output_dir; a checkpoint folder; or null

    def validate(self) -> None:
        if self.strategy not in ("auto", "ddp", "fsdp"):
            raise ValueError(f"strategy must be auto, ddp or fsdp, got {self.strategy!r}")
        if len(self.frame_size) != 2 or any(s % 32 for s in self.frame_size):
            raise ValueError(f"frame_size must be [H, W] with multiples of 32, got {self.frame_size}")
        if self.grad_accum < 1 or self.max_length < 1:
            raise ValueError("grad_accum and max_length must be >= 1")
        if self.max_skipped_steps < 0:
            raise ValueError(f"max_skipped_steps must be >= 0, got {self.max_skipped_steps}")
        if self.pack_row_multiple < 1:
            raise ValueError(f"pack_row_multiple must be >= 1, got {self.pack_row_multiple}")
        if self.num_frames is not None and self.fps is not None:
            self.fps = None  # a fixed count wins over the sampling rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, booleans, null, lists, dicts, strings)."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Settings from a YAML file (unknown keys are errors), then overrides (``model_settings.x=1`` sets one key)."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        values.update(loaded)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides or [])
    for key, value in items:
        if "." in key:
            outer, inner = key.split(".", 1)
            values.setdefault(outer, {})
            values[outer] = {**values[outer], inner: value}
        else:
            values[key] = value
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(TrainConfig)
    for key, value in values.items():
        if isinstance(value, str) and (float in typing.get_args(hints[key]) or hints[key] is float):
            try:
                values[key] = float(value)  # YAML reads "1e-5" (no dot) as a string
            except ValueError as err:
                raise ValueError(f"{key}: expected a number, got {value!r}") from err
    config = TrainConfig(**values)
    if isinstance(config.data_files, str):
        config.data_files = [config.data_files]
    config.validate()
    return config
