"""Loading and saving checkpoints in every layout (spatial_ttt.layouts), and Qwen3-VL conversion.

Loading is always strict: a missing, unexpected or mis-shaped tensor raises :class:`CheckpointError` naming it.
The loaded model carries ``model.ttt_settings``: every TTT setting in effect and where it came from.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import safe_open
from torch import Tensor

from .configuration import SpatialTTTConfig
from .layouts import (
    FROM_MODEL,
    PROCESSOR_FILES,
    TTT_SETTINGS,
    CheckpointError,
    Setting,
    fixture_settings,
    folder_layout,
    qwen_fields,
    read_config,
    resolve_settings,
    settings_from_tensors,
    tensor_shapes,
    weight_files,
)
from .models.modeling import SpatialTTTForConditionalGeneration, is_ttt_parameter

__all__ = [
    "CheckpointError",
    "convert_qwen3vl",
    "load_model",
    "load_reference_checkpoint",
    "load_state_strict",
    "read_config",
    "read_tensors",
    "save_model",
    "settings_in_effect",
]


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


def read_tensors(location: str | Path) -> dict[str, Tensor]:
    """All tensors of a model folder (single file or shards + index) or of one safetensors file."""
    tensors: dict[str, Tensor] = {}
    for file in weight_files(location):
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


def _build(qwen: Mapping[str, Any], settings: Mapping[str, Setting], where: str) -> SpatialTTTForConditionalGeneration:
    with config_values(where):
        config = SpatialTTTConfig(**qwen, **{name: s.value for name, s in settings.items()})
        model = SpatialTTTForConditionalGeneration(config)
    model.ttt_settings = dict(settings)
    return model


def _plain_qwen3vl_error(folder: str | Path) -> CheckpointError:
    return CheckpointError(
        f"{folder} is a plain Qwen3-VL checkpoint (model_type qwen3_vl, no TTT tensors): wrap it as Spatial-TTT "
        f"with `spatial-ttt convert {folder} OUT` (fresh TTT layers, for training), or load a Spatial-TTT "
        f"checkpoint over it with load_model(CHECKPOINT, base='{folder}')"
    )


def load_model(
    folder: str | Path,
    base: str | Path | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    **ttt_settings: Any,
) -> SpatialTTTForConditionalGeneration:
    """A Spatial-TTT checkpoint in any layout (ours, the fixture format, the authors' released folder), strictly,
    in eval mode (fp32 on CPU unless asked otherwise).

    ``base``: the reference's two-folder form: ``folder`` is then a checkpoint file or folder whose tensors are
    laid over the plain Qwen3-VL folder ``base`` (keys the checkpoint lacks come from the base).
    ``ttt_settings`` override any TTT setting (e.g. ``lact_chunk_size=56``, ``use_muon=True``); unknown names
    are an error. ``model.ttt_settings`` tells every setting in effect and its source.
    """
    if base is not None:
        return _load_over_base(folder, base, ttt_settings).to(device=device, dtype=dtype).eval()
    config = read_config(folder)
    layout = folder_layout(folder, config)
    read_off: dict[str, Any] = {}
    if layout == "qwen3_vl":
        raise _plain_qwen3vl_error(folder)
    if layout == "spatial_ttt":
        qwen = qwen_fields({k: v for k, v in config.items() if k not in TTT_SETTINGS})
        stated = {k: config[k] for k in TTT_SETTINGS if k in config}
    elif layout == "fixture":
        qwen = qwen_fields(config["qwen3vl_config"])
        stated = fixture_settings(config["lact"], str(folder))
    else:  # released
        qwen, stated = qwen_fields(config), {}
        read_off = settings_from_tensors(tensor_shapes(folder), str(folder))
    model = _build(qwen, resolve_settings(layout, stated, read_off, ttt_settings), str(folder))
    load_state_strict(model, read_tensors(folder))
    return model.to(device=device, dtype=dtype).eval()


def _load_over_base(
    checkpoint: str | Path, base: str | Path, overrides: Mapping[str, Any]
) -> SpatialTTTForConditionalGeneration:
    """The released evaluation's loading: Qwen3-VL ``base`` wrapped (attention moved into ``attn_layer``), then
    the checkpoint's tensors laid over it. Unlike the reference (strict=False) nothing may be left over or
    missing: a key neither has, a checkpoint key the model lacks, or a mis-shaped one is an error."""
    base_config = read_config(base)
    base_layout = folder_layout(base, base_config)
    if base_layout != "qwen3_vl":
        raise CheckpointError(f"base={base}: expected a plain Qwen3-VL folder, found the {base_layout} layout")
    read_off = settings_from_tensors(tensor_shapes(checkpoint), str(checkpoint))
    model = _build(qwen_fields(base_config), resolve_settings("released", {}, read_off, overrides), str(checkpoint))
    layers = set(model.config.ttt_layers)
    overlay = read_tensors(checkpoint)
    unexpected = sorted(set(overlay) - set(model.state_dict()))
    if unexpected:
        raise CheckpointError(f"{checkpoint}: unexpected keys for the wrapped model: {_listed(unexpected)}")
    tensors = {ttt_key(k, layers): v for k, v in read_tensors(base).items()}
    tensors.update(overlay)
    load_state_strict(model, tensors)
    return model


def load_reference_checkpoint(
    folder: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> SpatialTTTForConditionalGeneration:
    """A fixture-format checkpoint (config.json with ``qwen3vl_config`` and ``lact``), as :func:`load_model`."""
    if folder_layout(folder) != "fixture":
        raise CheckpointError(f"{folder}: config.json has no 'qwen3vl_config'/'lact' (not the fixture format)")
    return load_model(folder, dtype=dtype, device=device)


def settings_in_effect(model: SpatialTTTForConditionalGeneration) -> dict[str, Setting]:
    """The TTT settings of a model and their sources (as loaded; a model built in code: its config's values)."""
    known = getattr(model, "ttt_settings", {})
    return {name: known.get(name, Setting(getattr(model.config, name), FROM_MODEL)) for name in TTT_SETTINGS}


def copy_processor_files(source: str | Path, folder: str | Path, overwrite: bool = False) -> list[str]:
    """Copies the processor files ``source`` has into the model folder ``folder`` (keeping any it already has,
    unless ``overwrite``); returns the names copied."""
    source, folder = Path(source), Path(folder)
    copied = [n for n in PROCESSOR_FILES if (source / n).is_file() and (overwrite or not (folder / n).exists())]
    for name in copied:
        shutil.copy2(source / name, folder / name)
    return copied


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
    layout = folder_layout(folder, config)
    if layout == "released":
        raise CheckpointError(
            f"{folder} is already Spatial-TTT (the released layout: a Qwen3-VL config.json with TTT tensors); "
            "load it as it is (spatial_ttt.load_model, spatial-ttt info/ask) instead of converting it"
        )
    if layout != "qwen3_vl":
        raise CheckpointError(f"{folder}: model_type is {config.get('model_type')!r}, expected 'qwen3_vl'")
    unknown = sorted(set(ttt_settings) - set(TTT_SETTINGS))
    if unknown:
        raise CheckpointError(f"unknown TTT setting(s) {', '.join(unknown)} (known: {', '.join(TTT_SETTINGS)})")
    with config_values(folder):
        spatial_config = SpatialTTTConfig(**qwen_fields(config), **ttt_settings)
        model = SpatialTTTForConditionalGeneration(spatial_config)
    layers = set(spatial_config.ttt_layers)
    tensors = {ttt_key(k, layers): v for k, v in read_tensors(folder).items()}
    fresh = {k for k in model.state_dict() if is_ttt_parameter(k, layers)}
    load_state_strict(model, tensors, allow_missing=fresh)
    return model.to(dtype=dtype)
