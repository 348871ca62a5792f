"""The memory/speed settings (config.prefill_piece, mlp_piece, branch_piece, vision_patches): validated, saved like the other
inference settings, and pure knobs: another value changes how many calls a prefill makes, not its numbers."""

import json

import pytest
import torch

from spatial_ttt import CheckpointError, generation, load_model, save_model
from spatial_ttt.configuration import SpatialTTTConfig
from spatial_ttt.streaming import model_fingerprint
from spatial_ttt.tiny import tiny_config, tiny_model

from .helpers import video_prompt

SETTINGS = ("prefill_piece", "mlp_piece", "branch_piece", "vision_patches")


def test_the_defaults_are_the_tuned_values():
    config = tiny_config()
    assert (config.prefill_piece, config.mlp_piece, config.branch_piece, config.vision_patches) == (16384, 4096, 16384, 42240)


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("value", [0, -8, 2.5, "4096"])
def test_a_bad_value_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=rf"invalid SpatialTTTConfig: {name} must be a positive integer, got {value!r}"):
        tiny_config(**{name: value})


def prefill_calls(model, inputs, **call):
    """The last logits of a prefill, the patches of each vision tower call and the number of MLP calls."""
    vision, mlp = [], []
    hooks = [model.model.visual.register_forward_pre_hook(lambda m, args: vision.append(args[0].shape[0]))]
    hooks += [layer.mlp.register_forward_pre_hook(lambda m, args: mlp.append(args[0].shape[1]))
              for layer in model.model.language_model.layers]
    try:
        logits = generation.prefill(model, model.new_state(1), inputs["input_ids"], **call, **inputs_but_ids(inputs))
    finally:
        for hook in hooks:
            hook.remove()
    return logits, vision, len(mlp)


def inputs_but_ids(inputs):
    return {k: v for k, v in inputs.items() if k != "input_ids"}


# 71 tokens: 3 text, 9 frame groups of 16 patches (4 tokens + timestamp, start, end each), 5 text; 8 layers
@pytest.mark.parametrize("name, value, vision_calls, mlp_calls", [
    # 6 pieces of 1-2 groups, a vision call each (the MLP calls follow the stream engine's queues: not counted)
    ("prefill_piece", 14, [16, 32, 32, 32, 16, 16], None),
    ("mlp_piece", 16, [144], 5 * 8),  # 16 + 16 + 16 + 16 + 7 tokens per layer
    ("vision_patches", 32, [32, 32, 32, 32, 16], 8),  # 2 groups per call
])
def test_a_setting_changes_the_calls_not_the_numbers(one_thread, name, value, vision_calls, mlp_calls):
    inputs = video_prompt(frames_groups=9, grid_hw=4)
    default = tiny_model(use_muon=False, lact_chunk_size=10)
    tuned = tiny_model(use_muon=False, lact_chunk_size=10, **{name: value})  # the same weights (seed 0)
    expected, expected_vision, expected_mlp = prefill_calls(default, inputs)
    assert (expected_vision, expected_mlp) == ([144], 8)  # one call each: the prompt is shorter than every default
    logits, vision, mlp = prefill_calls(tuned, inputs)
    assert vision == vision_calls and mlp == (mlp_calls or mlp)
    # products over fewer rows may round differently in their last bit (BLAS blocking: the MLP's, and on some CPUs
    # the vision tower's too, which attends within a group); measured <= 3e-7
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert tuned.generate(**inputs, max_new_tokens=6).tolist() == default.generate(**inputs, max_new_tokens=6).tolist()


def test_a_setting_changed_on_a_built_model_takes_effect_and_a_call_argument_overrides_it(one_thread):
    inputs = video_prompt(frames_groups=9, grid_hw=4)
    tuned = dict(prefill_piece=14, vision_patches=16, mlp_piece=4)
    built = prefill_calls(tiny_model(use_muon=False, lact_chunk_size=10, **tuned), inputs)
    model = tiny_model(use_muon=False, lact_chunk_size=10)
    for name, value in tuned.items():
        setattr(model.config, name, value)
    logits, vision, mlp = prefill_calls(model, inputs)
    assert vision == [16] * 9 and mlp > 71 // 4 * 8 and (vision, mlp) == built[1:]
    assert torch.equal(logits, built[0])
    model.config.vision_patches, model.config.mlp_piece = 32, 16
    _, vision, mlp = prefill_calls(model, inputs, piece_tokens=1000)  # one forward despite prefill_piece
    assert (vision, mlp) == ([32, 32, 32, 32, 16], 5 * 8)
    features = model.encode_visual(inputs["pixel_values_videos"], inputs["video_grid_thw"], patches_per_call=1000)
    assert features[0].shape == (36, 64)


def test_saved_and_loaded_like_the_other_inference_settings(tmp_path, released_dir):
    """Like ttt_kernel: written to our config.json and read back from it, overridable at load time; a released
    folder (a plain Qwen3-VL config without them) gets the library defaults."""
    tuned = dict(prefill_piece=2048, mlp_piece=512, branch_piece=64, vision_patches=1024)
    save_model(tiny_model(ttt_kernel="reference", **tuned), tmp_path / "ours")
    saved = json.loads((tmp_path / "ours/config.json").read_text())
    assert {k: saved[k] for k in (*SETTINGS, "ttt_kernel")} == dict(tuned, ttt_kernel="reference")
    loaded = load_model(tmp_path / "ours", mlp_piece=256)
    got = {name: (s.value, s.source) for name, s in loaded.ttt_settings.items()}
    assert got["prefill_piece"] == (2048, "checkpoint config") and got["vision_patches"] == (1024, "checkpoint config")
    assert got["mlp_piece"] == (256, "override") and got["ttt_kernel"] == ("reference", "checkpoint config")
    assert (loaded.config.prefill_piece, loaded.config.mlp_piece, loaded.config.vision_patches) == (2048, 256, 1024)
    released = load_model(released_dir)
    for name in (*SETTINGS, "ttt_kernel"):
        default = getattr(SpatialTTTConfig, name)
        assert (released.ttt_settings[name].value, released.ttt_settings[name].source) == (default, "library default")
    with pytest.raises(CheckpointError, match="bad settings .*vision_patches must be a positive integer, got 0"):
        load_model(released_dir, vision_patches=0)


def test_a_saved_stream_continues_under_any_value():
    """How the model runs, not what it computes: the stream fingerprint leaves them out, as it does the kernels."""
    base = model_fingerprint(tiny_model())
    assert model_fingerprint(tiny_model(prefill_piece=100, mlp_piece=8, branch_piece=8, vision_patches=16)) == base
    assert model_fingerprint(tiny_model(window_size=100)) != base
