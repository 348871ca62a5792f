"""Loading and saving checkpoints: reference-format Spatial-TTT, our own format, and Qwen3-VL conversion.

Loading is always strict: a missing, unexpected or mis-shaped tensor raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import safe_open
from torch import Tensor

from .configuration import SpatialTTTConfig
from .models.modeling import SpatialTTTForConditionalGeneration, is_ttt_parameter

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as asked (what is wrong is in the message)."""


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json (is this a model folder?)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object of settings, got {type(config).__name__}")
    return config


@contextmanager
def config_values(folder: str | Path) -> Iterator[None]:
    """Bad values in a readable config.json (wrong types, sizes that do not fit together) -> CheckpointError
    naming the file, in one line."""
    try:
        yield
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, StrictDataclassError) as err:
        detail = " ".join(str(err).split())
        raise CheckpointError(f"{Path(folder) / 'config.json'}: bad settings ({detail})") from err


def checkpoint_kind(config: dict[str, Any]) -> str:
    """'reference' (config with qwen3vl_config + lact), 'spatial_ttt' (ours) or 'qwen3_vl' (plain Qwen3-VL)."""
    if "qwen3vl_config" in config and "lact" in config:
        return "reference"
    if config.get("model_type") in ("spatial_ttt", "qwen3_vl"):
        return config["model_type"]
    raise CheckpointError(f"unrecognised config.json (model_type={config.get('model_type')!r})")


def weight_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if (folder / INDEX_NAME).is_file():
        index = json.loads((folder / INDEX_NAME).read_text())
        files = sorted({folder / name for name in index["weight_map"].values()})
    elif (folder / WEIGHTS_NAME).is_file():
        files = [folder / WEIGHTS_NAME]
    else:
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME} or {INDEX_NAME}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{folder}: shard files listed in the index are missing: {missing}")
    return files


def read_tensors(folder: str | Path) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for file in weight_files(folder):
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as err:  # safetensors raises its own error types for corrupt headers/data
            raise CheckpointError(f"{file}: cannot read safetensors ({err})") from err
    return tensors


def _listed(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_state_strict(
    model: SpatialTTTForConditionalGeneration, tensors: dict[str, Tensor], allow_missing: set[str] = frozenset()
) -> None:
    """Copies ``tensors`` into ``model``; refuses missing (unless allowed), unexpected or mis-shaped keys."""
    expected = model.state_dict()
    tied = {"lm_head.weight"} if model.ties_embeddings else set()
    missing = sorted(k for k in expected if k not in tensors and k not in tied and k not in allow_missing)
    unexpected = sorted(k for k in tensors if k not in expected)
    mismatched = sorted(
        f"{k} (checkpoint {list(tensors[k].shape)}, model {list(expected[k].shape)})"
        for k in tensors
        if k in expected and tensors[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if mismatched:
        problems.append(f"mis-shaped keys: {_listed(mismatched)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))
    with torch.no_grad():
        for key, value in tensors.items():
            expected[key].copy_(value)


def load_reference_checkpoint(
    folder: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> SpatialTTTForConditionalGeneration:
    """A reference-format checkpoint (config.json with ``qwen3vl_config`` and ``lact``; reference key names),
    as a model in eval mode (fp32 on CPU unless asked otherwise)."""
    config = read_config(folder)
    if checkpoint_kind(config) != "reference":
        raise CheckpointError(f"{folder}: config.json has no 'qwen3vl_config'/'lact' (not a reference checkpoint)")
    with config_values(folder):
        model = SpatialTTTForConditionalGeneration(SpatialTTTConfig.from_reference(config["qwen3vl_config"], config["lact"]))
    load_state_strict(model, read_tensors(folder))
    return model.to(device=device, dtype=dtype).eval()


def load_model(
    folder: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> SpatialTTTForConditionalGeneration:
    """Any Spatial-TTT checkpoint folder (reference format or ours), strictly, in eval mode."""
    config = read_config(folder)
    kind = checkpoint_kind(config)
    if kind == "reference":
        return load_reference_checkpoint(folder, dtype, device)
    if kind == "qwen3_vl":
        raise CheckpointError(f"{folder} is a plain Qwen3-VL checkpoint: convert it first (spatial-ttt convert)")
    with config_values(folder):
        model = SpatialTTTForConditionalGeneration(SpatialTTTConfig.from_dict(config))
    load_state_strict(model, read_tensors(folder))
    return model.to(device=device, dtype=dtype).eval()


def save_model(model: SpatialTTTForConditionalGeneration, folder: str | Path, max_shard_size: str = "5GB") -> None:
    """Our format: HF ``save_pretrained`` (config.json with model_type spatial_ttt, safetensors shards)."""
    model.save_pretrained(str(folder), max_shard_size=max_shard_size)
    for file in Path(folder).glob("*.safetensors"):
        file.chmod(0o644)  # safetensors creates its files 0600; everything else in a model folder is 0644


def ttt_key(key: str, ttt_layers: set[int]) -> str:
    """Maps a Qwen3-VL attention key of a TTT layer into its ``attn_layer`` (other keys are unchanged)."""
    parts = key.split(".")
    if len(parts) > 4 and parts[:3] == ["model", "language_model", "layers"] and parts[4] == "self_attn":
        if int(parts[3]) in ttt_layers:
            return ".".join(parts[:5] + ["attn_layer"] + parts[5:])
    return key


def convert_qwen3vl(
    folder: str | Path, dtype: torch.dtype = torch.float32, **ttt_settings: Any
) -> SpatialTTTForConditionalGeneration:
    """Wraps a Qwen3-VL checkpoint as Spatial-TTT: pretrained weights kept (attention moves into
    ``attn_layer``), new TTT parameters initialised as the spec says. ``ttt_settings`` override the defaults."""
    config = read_config(folder)
    if checkpoint_kind(config) != "qwen3_vl":
        raise CheckpointError(f"{folder}: model_type is {config.get('model_type')!r}, expected 'qwen3_vl'")
    qwen = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "transformers_version")}
    with config_values(folder):
        spatial_config = SpatialTTTConfig(**qwen, **ttt_settings)
        model = SpatialTTTForConditionalGeneration(spatial_config)
    layers = set(spatial_config.ttt_layers)
    tensors = {ttt_key(k, layers): v for k, v in read_tensors(folder).items()}
    fresh = {k for k in model.state_dict() if is_ttt_parameter(k, layers)}
    load_state_strict(model, tensors, allow_missing=fresh)
    return model.to(dtype=dtype)
