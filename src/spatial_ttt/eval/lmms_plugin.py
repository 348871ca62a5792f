"""lmms-eval model type `spatial_ttt`, so the harness the reference uses can run our model.

Installing spatial-ttt declares the entry point `lmms_eval.models: spatial_ttt =
spatial_ttt.eval.lmms_plugin:manifest`, through which lmms-eval (0.7.x, its model registry v2) finds
`--model spatial_ttt`. lmms-eval is imported only when the class is first used, so this package never
requires it. model_args (anything else is an error):
- `pretrained=PATH` (required): the model folder;
- `loader=package.module:function` (optional): called as function(PATH, device=DEVICE), returns a model
  with `answer(video, prompt, *, max_new_tokens)`; default: `SpatialTTTPipeline.from_pretrained`;
- `sum_rooms_hint=true|false` (default true): the reference wrapper's multi-room sentence;
- lmms-eval's own `--device` (default: cuda:LOCAL_RANK if there is a GPU, else cpu) and `--batch_size` (1).
lmms-eval builds the prompts and scores the answers itself; like the reference wrapper, this one adds the
rooms hint, unwraps <answer>/\\boxed{} answers and turns in-memory images into files.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spatial_ttt.eval.interfaces import VideoQAModel
from spatial_ttt.eval.metrics import unwrap_answer
from spatial_ttt.eval.parallel import default_device
from spatial_ttt.eval.prompts import with_rooms_hint

MODEL_NAME = "spatial_ttt"
CLASS_PATH = f"{__name__}.SpatialTTTLmms"
MODEL_ARGS = ("pretrained", "loader", "sum_rooms_hint", "device", "batch_size", "max_batch_size")
DEFAULT_MAX_NEW_TOKENS = 16  # used only when a task gives none
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tiff"}

_built: type | None = None


def import_loader(spec: str) -> Callable[..., Any]:
    """'package.module:function' -> the function."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"spatial_ttt: loader must look like 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def load_pipeline(pretrained: str, *, device: str) -> VideoQAModel:
    """The default loader: the model folder as a pipeline with the evaluation's video settings."""
    from spatial_ttt.pipeline import SpatialTTTPipeline

    return SpatialTTTPipeline.from_pretrained(pretrained, device=device)


def parse_bool(name: str, value: Any) -> bool:
    """lmms-eval hands over True/False, 0/1 or text; anything else is an error, never a silent False."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"spatial_ttt: {name} must be true or false, got {value!r}")


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
    answer = model.answer(video, with_rooms_hint(context, rooms_hint), max_new_tokens=max_new_tokens)
    return unwrap_answer(answer)


def _build() -> type:
    from lmms_eval.api.model import lmms

    class SpatialTTTLmms(lmms):
        """Batch size 1, greedy decoding (as the reference); generation-only."""

        def __init__(
            self,
            pretrained: str,
            loader: str | None = None,
            sum_rooms_hint: Any = True,
            device: str | None = None,
            batch_size: Any = 1,
            max_batch_size: Any = None,
            **unknown: Any,
        ) -> None:
            super().__init__()
            if unknown:
                raise ValueError(
                    f"spatial_ttt: unknown model_args {', '.join(sorted(unknown))} (known: {', '.join(MODEL_ARGS)})"
                )
            if str(batch_size) != "1":
                raise ValueError(f"spatial_ttt runs with batch_size=1 only (as the reference), got {batch_size!r}")
            self.rooms_hint = parse_bool("sum_rooms_hint", sum_rooms_hint)
            self.device_name = device or default_device()
            load = import_loader(loader) if loader else load_pipeline
            self.model = load(pretrained, device=self.device_name)
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

    SpatialTTTLmms.__module__, SpatialTTTLmms.__qualname__ = __name__, "SpatialTTTLmms"
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
