"""Checkpoint formats: strict loading with named errors, round trips, and Qwen3-VL conversion."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from spatial_ttt import CheckpointError, convert_qwen3vl, load_model, load_reference_checkpoint, save_model
from spatial_ttt.tiny import tiny_config, tiny_model

from .helpers import video_prompt


@pytest.fixture
def reference_copy(golden_dir, tmp_path):
    folder = tmp_path / "ref"
    shutil.copytree(golden_dir / "muon_off", folder)
    return folder


def rewrite_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_reference_loader_returns_eval_fp32_cpu(reference_copy):
    model = load_reference_checkpoint(reference_copy)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.ttt_layers == [0, 1, 2, 4, 5, 6] and model.config.lact_chunk_size == 40


def test_missing_key_is_named(reference_copy):
    rewrite_weights(reference_copy, lambda t: t.pop("model.language_model.layers.1.self_attn.w0"))
    with pytest.raises(CheckpointError, match=r"missing keys: model\.language_model\.layers\.1\.self_attn\.w0"):
        load_reference_checkpoint(reference_copy)


def test_unexpected_key_is_named(reference_copy):
    rewrite_weights(reference_copy, lambda t: t.update({"model.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys: model\.extra\.weight"):
        load_reference_checkpoint(reference_copy)


def test_misshaped_key_is_named_with_both_shapes(reference_copy):
    key = "model.language_model.layers.0.self_attn.conv_q.weight"
    rewrite_weights(reference_copy, lambda t: t.update({key: torch.zeros(64, 1, 3, 3, 1)}))
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: .*conv_q\.weight \(checkpoint \[64, 1, 3, 3, 1\], model \[64, 1, 3, 3, 3\]\)"):
        load_reference_checkpoint(reference_copy)


def test_checkpoint_from_another_config_is_refused(reference_copy):
    config = json.loads((reference_copy / "config.json").read_text())
    config["lact"]["num_lact_heads"] = 2  # w0 would be [2, 32, 32]
    (reference_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"self_attn\.w0 \(checkpoint \[4, 16, 16\], model \[2, 32, 32\]\)"):
        load_reference_checkpoint(reference_copy)


def test_corrupt_or_absent_files_give_clear_errors(reference_copy, tmp_path):
    (reference_copy / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        load_reference_checkpoint(reference_copy)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "nowhere")
    (reference_copy / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(reference_copy)


def test_bad_ttt_settings_are_refused():
    with pytest.raises(ValueError, match=r"ttt_layers \[9\] outside 0\.\.7"):
        tiny_config(ttt_layers=[0, 9])
    with pytest.raises(ValueError, match="ttt_prenorm=True is not implemented"):
        tiny_config(ttt_prenorm=True)
    with pytest.raises(ValueError, match="not divisible by num_lact_heads 3"):
        tiny_config(num_lact_heads=3)


def test_save_and_load_round_trip_is_exact(tmp_path):
    model = tiny_model(w0_w2_low_rank=4)
    inputs = video_prompt()
    save_model(model, tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt/config.json").read_text())["model_type"] == "spatial_ttt"
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config.w0_w2_low_rank == 4 and loaded.config.ttt_layers == [0, 1, 2, 4, 5, 6]
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


def test_reference_checkpoint_resaved_in_our_format_gives_identical_logits(golden_dir, tmp_path):
    model = load_reference_checkpoint(golden_dir / "muon_off")
    save_model(model, tmp_path / "ours")
    inputs = load_file(golden_dir / "muon_off/inputs.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "ours")(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


def tiny_qwen3vl(tmp_path, tie: bool):
    spatial = tiny_config()
    config = Qwen3VLConfig(
        text_config=spatial.text_config.to_dict(), vision_config=spatial.vision_config.to_dict(),
        image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(1)
    qwen = Qwen3VLForConditionalGeneration(config).eval()
    qwen.save_pretrained(tmp_path / "qwen")
    return qwen


@pytest.mark.parametrize("tie", [False, True])
def test_converted_qwen3vl_reproduces_qwen3vl_at_init(tmp_path, tie):
    """At conversion the TTT output gate is zero and the conv is the identity, so with a window longer than the
    prompt the converted model must compute exactly what Qwen3-VL computes."""
    qwen = tiny_qwen3vl(tmp_path, tie)
    converted = convert_qwen3vl(tmp_path / "qwen", lact_chunk_size=8).eval()
    assert converted.config.ttt_layers == [0, 1, 2, 4, 5, 6]
    layer0 = converted.model.language_model.layers[0].self_attn
    torch.testing.assert_close(layer0.attn_layer.q_proj.weight, qwen.model.language_model.layers[0].self_attn.q_proj.weight)
    assert torch.equal(layer0.ttt_scale_proj.weight, torch.zeros_like(layer0.ttt_scale_proj.weight))
    assert torch.equal(layer0.conv_q.weight[:, 0, 1, 1, 1], torch.ones(64))
    assert layer0.w0.std().item() == pytest.approx(1 / 16**0.5, rel=0.2)
    inputs = video_prompt(frames_groups=2, grid_hw=4)
    types = (inputs["input_ids"] == 501).long() * 2
    with torch.no_grad():
        expected = qwen(**inputs, mm_token_type_ids=types).logits
        got = converted(**inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_convert_refuses_non_qwen3vl(golden_dir):
    with pytest.raises(CheckpointError, match="expected 'qwen3_vl'"):
        convert_qwen3vl(golden_dir / "muon_off")


def test_vision_tower_in_pieces_gives_the_same_features():
    """Pieces of whole temporal groups (the tower attends within a group) give the same features (to fp32 rounding:
    some CPUs' GEMMs round differently by row count, 4e-8 here on a 2026-11-28 machine), each call at most
    ``patches_per_call`` patches (at least one group) written into the outputs."""
    model = tiny_model()
    inputs = video_prompt(frames_groups=5, grid_hw=4)  # 5 groups of 16 patches
    calls = []
    hook = model.model.visual.register_forward_pre_hook(lambda module, args, kwargs: calls.append(args[0].shape[0]),
                                                        with_kwargs=True)
    results = {}
    with torch.no_grad():
        for limit in (8192, 32, 40, 1):
            calls.clear()
            results[limit] = model.encode_visual(inputs["pixel_values_videos"], inputs["video_grid_thw"], limit)
            results[limit] += (list(calls),)
    hook.remove()
    whole, whole_deep, whole_calls = results[8192]
    assert whole.shape == (20, 64) and len(whole_deep) == 2 and whole_calls == [80]
    assert results[32][2] == results[40][2] == [32, 32, 16] and results[1][2] == [16] * 5
    for limit in (32, 1):
        split, split_deep, _ = results[limit]
        torch.testing.assert_close(split, whole, atol=1e-6, rtol=0)  # a group mixed with another: ~1e-2 off
        for a, b in zip(split_deep, whole_deep):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="describes 80 patches but 79 pixel rows"):
        model.encode_visual(inputs["pixel_values_videos"][:-1], inputs["video_grid_thw"])


def test_tied_embeddings_save_without_duplicate_and_load_tied(tmp_path):
    from safetensors import safe_open

    model = tiny_model(tie_word_embeddings=True)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    save_model(model, tmp_path / "tied")
    with safe_open(str(tmp_path / "tied/model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in set(f.keys())
    loaded = load_model(tmp_path / "tied")
    assert loaded.lm_head.weight is loaded.get_input_embeddings().weight
    ids = torch.randint(0, 400, (1, 30))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    untied = tiny_model()
    assert untied.lm_head.weight is not untied.get_input_embeddings().weight
