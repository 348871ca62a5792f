"""The authors' released checkpoint layout: plain Qwen3-VL config.json + TTT tensors under the wrapped names.

Settings are read off the tensors where they can be, the rest take the released evaluation's values (Muon off);
the two-folder form (base Qwen3-VL + overlaid checkpoint), shards, tied embeddings, and the errors."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from spatial_ttt import CheckpointError, convert_qwen3vl, load_model
from spatial_ttt.checkpoint import settings_in_effect
from spatial_ttt.layouts import RELEASED_EVALUATION, folder_layout


@pytest.fixture(scope="module")
def golden(golden_dir):
    return load_file(golden_dir / "muon_off/inputs.safetensors"), load_file(golden_dir / "muon_off/expected.safetensors")


def sources(model) -> dict[str, tuple]:
    return {name: (s.value, s.source) for name, s in settings_in_effect(model).items()}


def test_released_folder_reproduces_the_golden_muon_off_outputs(released_dir, golden):
    """Done-when of issue 15: the fixture's chunk and window given, everything else read off the tensors or the
    released evaluation's values (Muon off)."""
    inputs, expected = golden
    assert folder_layout(released_dir) == "released"
    model = load_model(released_dir, lact_chunk_size=40, window_size=4096)
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, expected["logits_stream"], atol=1e-4, rtol=0)  # measured 2.5e-6
    out = model.generate(**inputs, max_new_tokens=12)
    assert out[0, -12:].tolist() == expected["generated"].tolist()
    got = sources(model)
    assert got["ttt_layers"] == ([0, 1, 2, 4, 5, 6], "read off tensors")
    assert got["num_lact_heads"] == (4, "read off tensors")
    assert got["w0_w2_low_rank"] == (0, "read off tensors")
    assert got["use_conv_layer"] == (True, "read off tensors")
    assert got["lact_chunk_size"] == (40, "override") and got["window_size"] == (4096, "override")
    assert got["use_muon"] == (False, "released evaluation default")
    assert got["use_momentum"] == (True, "released evaluation default")
    assert got["fast_weight_precision"] == ("fp32", "released evaluation default")
    assert got["ttt_kernel"] == ("auto", "library default")


def test_released_folder_without_overrides_takes_the_released_evaluation_values(released_dir):
    model = load_model(released_dir)
    cfg = model.config
    assert (cfg.lact_chunk_size, cfg.window_size, cfg.use_muon, cfg.ttt_base_lr) == (2648, 2648, False, 0.001)
    for name, value in RELEASED_EVALUATION.items():
        if name not in ("num_lact_heads", "w0_w2_low_rank", "use_conv_layer"):  # these are read off the tensors
            assert sources(model)[name] == (value, "released evaluation default"), name


def test_inference_muon_is_an_override(released_dir):
    model = load_model(released_dir, use_muon=True)
    assert model.config.use_muon is True and sources(model)["use_muon"] == (True, "override")


def test_unknown_or_invalid_override_is_refused(released_dir):
    with pytest.raises(CheckpointError, match=r"unknown TTT setting\(s\) chunk_size \(known: ttt_layers, "):
        load_model(released_dir, chunk_size=40)
    with pytest.raises(CheckpointError, match="fast_weight_precision must be 'fp32' or 'bf16', not 'fp16'"):
        load_model(released_dir, fast_weight_precision="fp16")


def test_sharded_released_folder_with_an_index_loads_the_same(released_dir, tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(released_dir / "config.json", folder)
    tensors = load_file(released_dir / "model.safetensors")
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in shards.items():
        save_file({k: tensors[k] for k in part}, folder / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    whole, sharded = load_model(released_dir), load_model(folder)
    assert folder_layout(folder) == "released"
    for (name, a), (_, b) in zip(whole.state_dict().items(), sharded.state_dict().items()):
        assert torch.equal(a, b), name


def test_tied_embeddings_without_lm_head(golden_dir, tmp_path, write_released):
    folder = write_released(golden_dir / "muon_off", tmp_path / "tied", tie=True)
    model = load_model(folder)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    golden = load_file(golden_dir / "muon_off/model.safetensors")
    assert torch.equal(model.lm_head.weight, golden["model.language_model.embed_tokens.weight"])


def test_plain_qwen3vl_folder_says_so_and_how_to_convert(base_dir):
    with pytest.raises(CheckpointError) as err:
        load_model(base_dir)
    assert str(err.value) == (
        f"{base_dir} is a plain Qwen3-VL checkpoint (model_type qwen3_vl, no TTT tensors): wrap it as Spatial-TTT "
        f"with `spatial-ttt convert {base_dir} OUT` (fresh TTT layers, for training), or load a Spatial-TTT "
        f"checkpoint over it with load_model(CHECKPOINT, base='{base_dir}')"
    )


def test_misshaped_tensor_is_named_with_both_shapes(released_dir, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(released_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["model.language_model.layers.5.self_attn.ttt_norm.weight"] = torch.ones(8)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: model\.language_model\.layers\.5\.self_attn\.ttt_norm\.weight \(checkpoint \[8\], model \[16\]\)"):
        load_model(folder)


def test_layers_that_disagree_on_the_head_count_are_refused(released_dir, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(released_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    tensors["model.language_model.layers.2.self_attn.w0"] = torch.zeros(2, 32, 32)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"TTT layers disagree on their settings: .*'num_lact_heads': 4.* vs layers \{2: \{'num_lact_heads': 2"):
        load_model(folder)


def test_convert_refuses_a_released_folder_instead_of_nesting_attn_layer(released_dir):
    with pytest.raises(CheckpointError, match=r"is already Spatial-TTT \(the released layout"):
        convert_qwen3vl(released_dir)


# ------------------------------------------------------------------------------------------------------------------
# the reference's two-folder form: base Qwen3-VL + overlaid checkpoint


@pytest.fixture(scope="module")
def base_dir(released_dir, tmp_path_factory):
    """A plain Qwen3-VL folder holding the golden model's pretrained part: attention unwrapped from attn_layer,
    no TTT tensors; its vision tower and embeddings are the golden ones, the rest perturbed (so that a test can
    tell which side a tensor came from)."""
    folder = tmp_path_factory.mktemp("base") / "qwen3vl"
    folder.mkdir()
    shutil.copy(released_dir / "config.json", folder)
    tensors = {}
    for key, value in load_file(released_dir / "model.safetensors").items():
        if ".self_attn." in key and ".attn_layer." not in key and not key.split(".")[5] in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"):
            continue  # a TTT tensor
        keep = key.startswith("model.visual.") or "embed_tokens" in key
        tensors[key.replace(".attn_layer.", ".")] = value if keep else value + 1.0
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def overlay_without_vision(released_dir, path):
    tensors = {k: v for k, v in load_file(released_dir / "model.safetensors").items() if not k.startswith("model.visual.")}
    save_file(tensors, path, metadata={"format": "pt"})
    return path


def test_checkpoint_over_base_takes_the_missing_keys_from_the_base(released_dir, base_dir, tmp_path):
    """The same tensors as the released folder (which reproduces the golden outputs): the vision tower from the
    base, everything else from the checkpoint, none of the base's perturbed tensors."""
    overlay = overlay_without_vision(released_dir, tmp_path / "checkpoint.safetensors")
    model = load_model(overlay, base=base_dir, lact_chunk_size=40, window_size=4096)
    reference = load_model(released_dir, lact_chunk_size=40, window_size=4096)
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    assert sources(model)["use_muon"] == (False, "released evaluation default")
    assert model.config.to_dict() == reference.config.to_dict()


def test_checkpoint_over_base_errors(released_dir, base_dir, tmp_path):
    tensors = load_file(released_dir / "model.safetensors")
    extra = tmp_path / "extra.safetensors"
    save_file({**tensors, "model.language_model.layers.0.self_attn.attn_layer.attn_layer.q_proj.weight": torch.zeros(64, 64)}, extra)
    with pytest.raises(CheckpointError, match=r"extra\.safetensors: unexpected keys for the wrapped model: model\.language_model\.layers\.0\.self_attn\.attn_layer\.attn_layer\.q_proj\.weight"):
        load_model(extra, base=base_dir)
    bad = tmp_path / "bad.safetensors"
    save_file({**tensors, "model.language_model.layers.0.self_attn.q_scale": torch.ones(32)}, bad)
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: model\.language_model\.layers\.0\.self_attn\.q_scale \(checkpoint \[32\], model \[64\]\)"):
        load_model(bad, base=base_dir)
    no_ttt = tmp_path / "no_ttt.safetensors"
    save_file({k: v for k, v in tensors.items() if k.startswith("model.visual.")}, no_ttt)
    with pytest.raises(CheckpointError, match=r"no_ttt\.safetensors: no TTT tensors"):
        load_model(no_ttt, base=base_dir)
    with pytest.raises(CheckpointError, match=r"base=.*: expected a plain Qwen3-VL folder, found the released layout"):
        load_model(extra, base=released_dir)
    without_w1 = tmp_path / "without_w1.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.endswith("layers.4.self_attn.w1")}, without_w1)
    with pytest.raises(CheckpointError, match=r"missing keys: model\.language_model\.layers\.4\.self_attn\.w1$"):
        load_model(without_w1, base=base_dir)


def test_provenance_of_the_fixture_format_and_ours(golden_dir, tmp_path):
    from spatial_ttt import save_model

    fixture = load_model(golden_dir / "muon_on")
    got = sources(fixture)
    assert folder_layout(golden_dir / "muon_on") == "fixture"
    assert got["use_muon"] == (True, "checkpoint config") and got["lact_chunk_size"] == (40, "checkpoint config")
    assert got["ttt_layers"] == ([0, 1, 2, 4, 5, 6], "checkpoint config")
    assert got["ttt_base_lr"] == (0.001, "released evaluation default")  # not in the fixture's lact
    save_model(fixture, tmp_path / "ours")
    ours = sources(load_model(tmp_path / "ours", window_size=64))
    assert ours.pop("window_size") == (64, "override")
    assert {source for _, source in ours.values()} == {"checkpoint config"}
    assert ours["use_muon"] == (True, "checkpoint config")


def test_released_config_written_by_transformers_4_57_loads(golden_dir, tmp_path, golden):
    """The release was saved by transformers 4.57: its config.json is the fixture's qwen3vl_config verbatim
    (rope_scaling, transformers_version 4.57.1)."""
    inputs, expected = golden
    folder = tmp_path / "v457"
    folder.mkdir()
    qwen = json.loads((golden_dir / "muon_off/config.json").read_text())["qwen3vl_config"]
    assert qwen["transformers_version"] == "4.57.1" and qwen["model_type"] == "qwen3_vl"
    (folder / "config.json").write_text(json.dumps(qwen))
    shutil.copy(golden_dir / "muon_off/model.safetensors", folder)
    model = load_model(folder, lact_chunk_size=40, window_size=4096)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected["logits_stream"], atol=1e-4, rtol=0)


def test_a_checkpoint_file_without_base_says_how_to_use_it(released_dir):
    with pytest.raises(CheckpointError, match=r"model\.safetensors is a file: .* pass base=QWEN3VL_FOLDER"):
        load_model(released_dir / "model.safetensors")


def test_a_model_built_in_code_reports_its_config(golden_dir):
    from spatial_ttt.tiny import tiny_model

    got = sources(tiny_model(use_muon=False))
    assert got["use_muon"] == (False, "model config") and {s for _, s in got.values()} == {"model config"}
