import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
from eval_fixtures import FakeVideoModel
from PIL import Image

from spatial_ttt.eval import lmms_plugin


def test_importing_needs_no_lmms_eval():
    code = (
        "import sys, spatial_ttt.eval, spatial_ttt.eval.lmms_plugin, spatial_ttt.eval.cli;"
        "print('lmms_eval' in sys.modules)"
    )
    src = str(Path(lmms_plugin.__file__).parents[2])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src}, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.fixture
def fake_lmms_eval(monkeypatch):
    """Just the base class the plug-in derives from (the real lmms-eval: test_eval_lmms_real.py)."""

    class lmms:  # noqa: N801 - the harness's name
        def __init__(self):
            self.task_dict = {}

    model_mod = types.ModuleType("lmms_eval.api.model")
    model_mod.lmms = lmms
    loader_mod = types.ModuleType("fake_spatial_loader")
    loader_mod.load = lambda path, device: FakeVideoModel(
        {"How many": "<answer> 3 </answer>", "Which view": "B", "Which room": "A"}
    )
    for name, mod in {
        "lmms_eval": types.ModuleType("lmms_eval"),
        "lmms_eval.api": types.ModuleType("lmms_eval.api"),
        "lmms_eval.api.model": model_mod,
        "fake_spatial_loader": loader_mod,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(lmms_plugin, "_built", None)


def test_generate(fake_lmms_eval, tmp_path):
    cls = lmms_plugin.SpatialTTTLmms
    assert cls.__module__ == "spatial_ttt.eval.lmms_plugin" and cls.__qualname__ == "SpatialTTTLmms"

    model = cls(pretrained="ckpt", loader="fake_spatial_loader:load", device="cpu")
    model.task_dict = {
        "vsibench": {"test": {0: {"video": "/v/scene.mp4"}}},
        "mindcube_tiny": {"combined": {5: {"imgs": [Image.new("RGB", (2, 2)), Image.new("RGB", (2, 2))]}}},
    }
    requests = [
        SimpleNamespace(
            args=("How many chairs?", {"max_new_tokens": 16}, lambda d: [d["video"]], 0, "vsibench", "test")
        ),
        SimpleNamespace(
            args=("Which view?", {"max_new_tokens": 4096}, lambda d: d["imgs"], 5, "mindcube_tiny", "combined")
        ),
    ]
    # the reference wrapper's unwrap: "<answer> 3 </answer>" -> "3"
    assert model.generate_until(requests) == ["3", "B"]
    (video, prompt, tokens), (images, _, tokens2) = model.model.calls
    assert video == Path("/v/scene.mp4") and tokens == 16 and tokens2 == 4096
    assert (
        prompt
        == "How many chairs? There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the"
        " final total."
    )
    assert [p.name for p in images] == ["mindcube_tiny_combined_5_0.png", "mindcube_tiny_combined_5_1.png"]
    assert all(p.exists() for p in images)

    no_hint = cls(pretrained="ckpt", loader="fake_spatial_loader:load", sum_rooms_hint=False, device="cpu")
    no_hint.task_dict = model.task_dict
    no_hint.generate_until(requests[:1])
    assert no_hint.model.calls[0][1] == "How many chairs?"
    with pytest.raises(NotImplementedError):
        model.loglikelihood([])


@pytest.mark.parametrize("value, parsed", [(True, True), ("False", False), ("0", False), (1, True), ("yes", True)])
def test_parse_bool(value, parsed):
    assert lmms_plugin.parse_bool("x", value) is parsed


def test_bad_arguments(fake_lmms_eval):
    with pytest.raises(ValueError, match="batch_size=1 only"):
        lmms_plugin.SpatialTTTLmms(pretrained="x", loader="fake_spatial_loader:load", batch_size=2)
    with pytest.raises(ValueError, match=r"unknown model_args lact_chunk, sum_room_hint \(known: pretrained, "):
        lmms_plugin.SpatialTTTLmms(pretrained="x", sum_room_hint=False, lact_chunk=3)
    with pytest.raises(ValueError, match="package.module:function"):
        lmms_plugin.import_loader("no_colon")
    with pytest.raises(AttributeError):
        lmms_plugin.DoesNotExist  # noqa: B018
