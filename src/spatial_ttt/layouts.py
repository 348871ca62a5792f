"""Checkpoint layouts, and which TTT setting is in effect and where it came from.

Layouts of a model folder (docs/model.md):
- ``spatial_ttt``: ours (``save_model``): config.json with model_type "spatial_ttt" holds every TTT setting.
- ``fixture``: config.json with ``qwen3vl_config`` + ``lact`` (the golden fixtures' format).
- ``released``: the authors' release, transformers ``save_pretrained`` of the wrapped Qwen3-VL: a plain Qwen3-VL
  config.json (no TTT settings) and the TTT tensors under the wrapped names. The layer list, head count, low
  rank and conv presence are read off the tensors; every other setting takes the released
  evaluation's value (:data:`RELEASED_EVALUATION`), which is how the published numbers were computed.
- ``qwen3_vl``: plain Qwen3-VL (no TTT tensors): wrap it with ``convert`` first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers import Qwen3VLConfig

from .configuration import SpatialTTTConfig

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# The processor files of a Qwen3-VL / Spatial-TTT model folder (what SpatialTTTProcessor.from_pretrained reads).
PROCESSOR_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
    "video_preprocessor_config.json", "generation_config.json",
)

# Where a setting in effect came from.
FROM_CONFIG = "checkpoint config"
FROM_TENSORS = "read off tensors"
FROM_RELEASED = "released evaluation default"
FROM_LIBRARY = "library default"
FROM_OVERRIDE = "override"
FROM_MODEL = "model config"  # a model built in code, not loaded from a folder

# The TTT settings: SpatialTTTConfig's fields beyond Qwen3-VL's.
TTT_SETTINGS: tuple[str, ...] = tuple(
    name for name in SpatialTTTConfig.__dataclass_fields__ if name not in Qwen3VLConfig.__dataclass_fields__
)

# The released evaluation (spec/official-model.md, "Released checkpoints and the released evaluation's
# settings"): its script sets nh 4, low rank 0, conv on, chunk 2648, window 2648 and the layer list; every other
# value is the TTT layer's constructor default. Notably use_muon=False: training ran Newton-Schulz, the published
# numbers did not. fast_weight_precision "fp32" is the reference's inference numerics (fp32 states).
RELEASED_EVALUATION: dict[str, Any] = {
    "num_lact_heads": 4,
    "lact_chunk_size": 2648,
    "window_size": 2648,
    "use_muon": False,
    "use_momentum": True,
    "use_conv_layer": True,
    "w0_w2_low_rank": 0,
    "inter_multi": 1,
    "ttt_base_lr": 0.001,
    "no_v_silu": False,
    "ttt_nope": False,
    "learnable_ttt_scale": True,
    "ttt_prenorm": False,
    "qkv_silu": True,
    "lr_dim": 1,
    "fp32_states": True,
    "fast_weight_precision": "fp32",
}

# Names directly under a decoder layer's ``self_attn`` that plain Qwen3-VL attention has.
_ATTENTION_PARTS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"})
_LAYER_KEY = re.compile(r"^model\.language_model\.layers\.(\d+)\.self_attn\.(.+)$")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as asked (what is wrong is in the message)."""


@dataclass(frozen=True)
class Setting:
    """One TTT setting in effect: its value and where it came from (one of the ``FROM_*`` strings)."""

    value: Any
    source: str


# ----------------------------------------------------------------------------------------------------------------
# files


def read_config(folder: str | Path) -> dict[str, Any]:
    if Path(folder).is_file():
        raise CheckpointError(
            f"{folder} is a file: a model is a folder; to lay a checkpoint file over a Qwen3-VL folder pass "
            "base=QWEN3VL_FOLDER (--base on the command line)"
        )
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


def weight_files(location: str | Path) -> list[Path]:
    """The safetensors files of a folder (single file or shards listed by the index), or a file itself."""
    location = Path(location)
    if location.is_file():
        return [location]
    if (location / INDEX_NAME).is_file():
        try:
            index = json.loads((location / INDEX_NAME).read_text())
            names = index["weight_map"].values()
        except (json.JSONDecodeError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{location / INDEX_NAME}: not a safetensors index ({err!r})") from err
        files = sorted({location / name for name in names})
    elif (location / WEIGHTS_NAME).is_file():
        files = [location / WEIGHTS_NAME]
    elif location.is_dir():
        raise CheckpointError(f"{location}: no {WEIGHTS_NAME} or {INDEX_NAME}")
    else:
        raise CheckpointError(f"checkpoint not found: {location}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{location}: shard files listed in the index are missing: {missing}")
    return files


def tensor_shapes(location: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from the safetensors headers only (no weights are read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in weight_files(location):
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{file}: cannot read safetensors ({err})") from err
    return shapes


# ----------------------------------------------------------------------------------------------------------------
# layouts


def ttt_layer_parts(shapes: Mapping[str, tuple[int, ...]]) -> dict[int, dict[str, tuple[int, ...]]]:
    """Layer index -> {name under ``self_attn`` -> shape} for the layers holding TTT tensors (anything under
    ``self_attn`` that plain Qwen3-VL attention lacks, ``attn_layer.*`` included)."""
    layers: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        match = _LAYER_KEY.match(key)
        if match:
            layers.setdefault(int(match[1]), {})[match[2]] = shape
    return {i: parts for i, parts in sorted(layers.items()) if any(p.split(".")[0] not in _ATTENTION_PARTS for p in parts)}


def folder_layout(folder: str | Path, config: Mapping[str, Any] | None = None) -> str:
    """'spatial_ttt', 'fixture', 'released' or 'qwen3_vl' (see the module docstring)."""
    config = read_config(folder) if config is None else config
    if "qwen3vl_config" in config and "lact" in config:
        return "fixture"
    model_type = config.get("model_type")
    if model_type == "spatial_ttt":
        return "spatial_ttt"
    if model_type == "qwen3_vl":
        return "released" if ttt_layer_parts(tensor_shapes(folder)) else "qwen3_vl"
    raise CheckpointError(f"{folder}: unrecognised config.json (model_type={model_type!r})")


def settings_from_tensors(shapes: Mapping[str, tuple[int, ...]], where: str) -> dict[str, Any]:
    """The settings the wrapped model's tensor names and shapes determine: ttt_layers, num_lact_heads (w0 is
    [nh, dh, d]), w0_w2_low_rank (w0.w_left [nh, dh, r] present) and use_conv_layer (conv_q present). Every TTT
    layer must agree. (Any other mismatch, e.g. a missing momentum_proj, is then a named error of the strict load.)"""
    layers = ttt_layer_parts(shapes)
    if not layers:
        raise CheckpointError(f"{where}: no TTT tensors (no model.language_model.layers.N.self_attn.w0 ...)")
    per_layer = {}
    for index, parts in layers.items():
        if len(parts.get("w0", ())) == 3:
            nh, rank = parts["w0"][0], 0
        elif len(parts.get("w0.w_left", ())) == 3:
            nh, rank = parts["w0.w_left"][0], parts["w0.w_left"][2]
        else:
            raise CheckpointError(
                f"{where}: layer {index} has TTT tensors but no 3-d self_attn.w0 or self_attn.w0.w_left "
                f"(it has {', '.join(sorted(parts))})"
            )
        per_layer[index] = {"num_lact_heads": nh, "w0_w2_low_rank": rank, "use_conv_layer": "conv_q.weight" in parts}
    first = next(iter(per_layer.values()))
    differing = {i: s for i, s in per_layer.items() if s != first}
    if differing:
        raise CheckpointError(f"{where}: TTT layers disagree on their settings: {first} vs layers {differing}")
    return {"ttt_layers": sorted(per_layer), **first}


def resolve_settings(
    layout: str,
    stated: Mapping[str, Any],
    read_off: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> dict[str, Setting]:
    """Every TTT setting with its source. ``stated``: the checkpoint config's TTT settings; ``read_off``: those the
    tensors determine (released layout). Precedence: override > read off tensors > checkpoint config > the
    released evaluation's value (fixture and released layouts) > SpatialTTTConfig's default."""
    unknown = sorted(set(overrides) - set(TTT_SETTINGS))
    if unknown:
        raise CheckpointError(f"unknown TTT setting(s) {', '.join(unknown)} (known: {', '.join(TTT_SETTINGS)})")
    settings = {}
    fields = SpatialTTTConfig.__dataclass_fields__
    for name in TTT_SETTINGS:
        if name in overrides:
            settings[name] = Setting(overrides[name], FROM_OVERRIDE)
        elif name in read_off:
            settings[name] = Setting(read_off[name], FROM_TENSORS)
        elif name in stated:
            settings[name] = Setting(stated[name], FROM_CONFIG)
        elif layout in ("fixture", "released") and name in RELEASED_EVALUATION:
            settings[name] = Setting(RELEASED_EVALUATION[name], FROM_RELEASED)
        else:
            field = fields[name]
            default = field.default_factory() if callable(field.default_factory) else field.default
            settings[name] = Setting(default, FROM_LIBRARY)
    return settings


def qwen_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Qwen3-VL config dict without the keys that name its class (so SpatialTTTConfig can take it)."""
    return {k: v for k, v in config.items() if k not in ("model_type", "architectures", "transformers_version")}


def fixture_settings(lact: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fixture format's ``lact`` dict as SpatialTTTConfig settings (``lact_layers`` "0/1/2" -> ttt_layers)."""
    settings = dict(lact)
    layers = settings.pop("lact_layers", None)
    if layers is not None:
        settings["ttt_layers"] = [int(i) for i in layers.split("/") if i != ""] if isinstance(layers, str) else list(layers)
    unknown = sorted(set(settings) - set(TTT_SETTINGS))
    if unknown:
        raise CheckpointError(f"{where}: unknown TTT settings in the checkpoint's 'lact': {unknown}")
    return settings


def describe(settings: Mapping[str, Setting]) -> dict[str, dict[str, Any]]:
    """JSON-ready ``{name: {"value": ..., "source": ...}}``."""
    return {name: {"value": s.value, "source": s.source} for name, s in settings.items()}


def summary_line(settings: Mapping[str, Setting]) -> str:
    """One line for logs: the settings that change the computation, each with its source when not from the
    checkpoint config (e.g. ``use_muon=False (released evaluation default)``)."""
    shown = ("lact_chunk_size", "window_size", "use_muon", "use_momentum", "use_conv_layer", "num_lact_heads",
             "w0_w2_low_rank", "fast_weight_precision")
    parts = []
    for name in shown:
        s = settings[name]
        parts.append(f"{name}={s.value}" + ("" if s.source == FROM_CONFIG else f" ({s.source})"))
    return "TTT settings: " + ", ".join(parts)
