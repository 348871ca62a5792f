"""lmms-eval model type `spatial_ttt`, so the harness the reference uses can run our model.

lmms-eval is imported only when the class is first used, so this package never requires it.
Use one of:
- programmatic: `from spatial_ttt.eval import lmms_plugin; lmms_plugin.register()`, then run lmms-eval
  in that process with `--model spatial_ttt --model_args pretrained=PATH,loader=pkg.mod:fn`;
- an entry point in the installing project: group `lmms_eval.models`, value
  `spatial_ttt.eval.lmms_plugin:manifest`.
`loader` names a function PATH -> model with `answer(video, prompt, *, max_new_tokens)`. lmms-eval builds
the prompts and scores the answers itself; this wrapper only adds the reference's rooms hint (on unless
`sum_rooms_hint=False`) and turns in-memory images into files.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spatial_ttt.eval.interfaces import VideoQAModel
from spatial_ttt.eval.prompts import with_rooms_hint

MODEL_NAME = "spatial_ttt"
CLASS_PATH = f"{__name__}.SpatialTTTLmms"
DEFAULT_MAX_NEW_TOKENS = 16  # used only when a task gives none
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tiff"}

_built: type | None = None


def import_loader(spec: str) -> Callable[[str], Any]:
    """'package.module:function' -> the function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"loader must look like 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def to_model_input(visuals: list[Any], image_dir: Path, key: str) -> str | Path | list[Path]:
    """lmms-eval visuals -> our model's input: one video path, or image files (PIL images are saved)."""
    if (
        len(visuals) == 1
        and isinstance(visuals[0], (str, Path))
        and Path(visuals[0]).suffix.lower() not in _IMAGE_SUFFIXES
    ):
        return Path(visuals[0])
    paths = []
    for k, visual in enumerate(visuals):
        if isinstance(visual, (str, Path)):
            paths.append(Path(visual))
        elif hasattr(visual, "save"):  # PIL.Image
            path = image_dir / f"{key}_{k}.png"
            visual.save(path)
            paths.append(path)
        else:
            raise TypeError(f"unsupported visual for {key}: {type(visual).__name__}")
    return paths


def answer_request(model: VideoQAModel, args: tuple, task_dict: dict, *, rooms_hint: bool, image_dir: Path) -> str:
    """One lmms-eval `generate_until` request: (context, gen_kwargs, doc_to_visual, doc_id, task, split)."""
    context, gen_kwargs, doc_to_visual, doc_id, task, split = args
    visuals = doc_to_visual(task_dict[task][split][doc_id])
    video = to_model_input(list(visuals), image_dir, f"{task}_{split}_{doc_id}")
    max_new_tokens = int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
    return model.answer(video, with_rooms_hint(context, rooms_hint), max_new_tokens=max_new_tokens)


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _build() -> type:
    from lmms_eval.api.model import lmms

    class SpatialTTTLmms(lmms):
        """Batch size 1, greedy decoding (as the reference); generation-only."""

        def __init__(
            self, pretrained: str, loader: str, sum_rooms_hint: Any = True, batch_size: Any = 1, **_: Any
        ) -> None:
            super().__init__()
            if int(batch_size) != 1:
                raise ValueError("spatial_ttt runs with batch_size=1 only (as the reference)")
            self.model = import_loader(loader)(pretrained)
            self.rooms_hint = _as_bool(sum_rooms_hint)
            self._image_dir = tempfile.TemporaryDirectory(prefix="spatial_ttt_lmms_")

        def generate_until(self, requests: list[Any]) -> list[str]:
            image_dir = Path(self._image_dir.name)
            return [
                answer_request(self.model, r.args, self.task_dict, rooms_hint=self.rooms_hint, image_dir=image_dir)
                for r in requests
            ]

        def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
            raise NotImplementedError("spatial_ttt supports generation tasks only")

        def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
            raise NotImplementedError("spatial_ttt supports single-round generation only")

    SpatialTTTLmms.__module__ = __name__
    return SpatialTTTLmms


def __getattr__(name: str) -> Any:
    # Lazy so that lmms-eval can resolve CLASS_PATH while importing this module stays lmms-eval-free.
    global _built
    if name == "SpatialTTTLmms":
        if _built is None:
            _built = _build()
        return _built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def manifest() -> Any:
    """Entry-point payload for lmms-eval's `lmms_eval.models` group."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)


def register() -> None:
    """Register `spatial_ttt` with an installed lmms-eval (both its old and its manifest registry)."""
    from lmms_eval.api.registry import register_model

    register_model(MODEL_NAME)(__getattr__("SpatialTTTLmms"))
    try:
        from lmms_eval.models import MODEL_REGISTRY_V2
    except ImportError:  # older lmms-eval: the registry above is the only one
        return
    MODEL_REGISTRY_V2.register_manifest(manifest(), overwrite=True)
