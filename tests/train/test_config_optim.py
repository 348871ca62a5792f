from pathlib import Path

import pytest
import torch

from spatial_ttt.tiny import tiny_model
from spatial_ttt.train import load_config, parameter_groups, parameter_kind
from spatial_ttt.train.optim import build_optimizer, build_scheduler, configure_trainable, lr_factor
from spatial_ttt.video.sampling import num_sampled_frames

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_released_recipe_is_the_default_config():
    cfg = load_config(CONFIGS / "spatial_ttt_2b.yaml")
    assert (cfg.lr, cfg.lact_lr, cfg.weight_decay, cfg.warmup_ratio, cfg.min_lr_ratio) == (1e-6, 1e-5, 0.01, 0.01, 0.1)
    assert cfg.bf16 and cfg.gradient_checkpointing and cfg.freeze_vision and cfg.packing
    assert (cfg.epochs, cfg.max_length, cfg.min_frames, cfg.max_frames, cfg.grad_accum) == (1, 65536, 16, 128, 1)
    assert cfg.strategy == "fsdp" and not cfg.fsdp_reshard_after_forward  # ZeRO-2-like sharding
    # the reference's sampling (video_fps 30, 16..128 frames): 128 frames of any video longer than ~4 s
    assert (cfg.fps, cfg.num_frames, cfg.system_prompt) == (30.0, None, None)
    frames = dict(fps=cfg.fps, max_frames=cfg.max_frames, min_frames=cfg.min_frames)
    assert num_sampled_frames(1800, 30.0, **frames) == 128  # 60 s at 30 fps
    assert num_sampled_frames(600, 10.0, **frames) == 128  # 60 s at 10 fps
    assert num_sampled_frames(90, 30.0, **frames) == 90  # 3 s: every frame
    assert num_sampled_frames(8, 30.0, **frames) == 8


def test_overrides_types_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nmax_steps: 3\nmodel_settings: {use_muon: false}\n")
    cfg = load_config(path, ["lact_lr=2e-3", "frame_size=[64, 96]", "model_settings.lact_chunk_size=8", "resume=null"])
    assert cfg.lr == 1e-4 and cfg.lact_lr == 2e-3 and cfg.max_steps == 3 and cfg.frame_size == [64, 96]
    assert cfg.model_settings == {"use_muon": False, "lact_chunk_size": 8} and cfg.resume is None
    with pytest.raises(ValueError, match="unknown settings: nope"):
        load_config(path, ["nope=1"])
    with pytest.raises(ValueError, match="multiples of 32"):
        load_config(None, ["frame_size=[50, 64]"])
    with pytest.raises(ValueError, match="pack_row_multiple must be >= 1, got 0"):
        load_config(None, ["pack_row_multiple=0"])


def test_parameter_groups_and_freezing():
    model = tiny_model()
    cfg = load_config(None, {"lr": 1e-6, "lact_lr": 1e-5})
    counts = configure_trainable(model, cfg)
    assert counts["vision"] == 0 and counts["ttt"] > 0 and counts["llm"] > 0
    # the convs: 6 TTT layers x conv_q/k/v, each [64, 1, 3, 3, 3], no bias
    assert counts["conv"] == 6 * 3 * 64 * 27
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("model.visual."))
    groups = parameter_groups(model, cfg)
    names = {g["kind"]: set() for g in groups}
    for g in groups:
        names[g["kind"]] |= set(g["names"])
        assert g["lr"] == (1e-5 if g["kind"] == "ttt" else 1e-6)
        if g["weight_decay"] == 0:
            assert all(n.endswith(".bias") or "norm" in n for n in g["names"])
    ttt = names["ttt"]
    layer0 = "model.language_model.layers.0.self_attn."
    # the reference's lact_lr keyword list; the spatial convs train at the backbone rate (1e-6)
    for key in ("w0", "w1", "w2", "lr_proj.weight", "lr_proj.bias", "q_scale", "q_offset", "k_scale", "k_offset",
                "ttt_scale_proj.weight", "ttt_norm.weight", "momentum_proj.0.weight"):
        assert layer0 + key in ttt
    assert names["conv"] == {f"model.language_model.layers.{i}.self_attn.conv_{x}.weight" for i in (0, 1, 2, 4, 5, 6) for x in "qkv"}
    assert {g["lr"] for g in groups if g["kind"] == "conv"} == {1e-6}
    assert not any(".attn_layer." in n for n in ttt)
    assert layer0 + "attn_layer.q_proj.weight" in names["llm"]
    assert "model.language_model.layers.3.self_attn.q_proj.weight" in names["llm"]  # anchor layer
    assert parameter_kind("model.visual.merger.linear_fc1.weight", {0}) == "vision"
    everything = {n for n, p in model.named_parameters() if p.requires_grad}
    assert ttt | names["conv"] | names["llm"] == everything
    cfg2 = load_config(None, {"freeze_vision": False, "freeze_llm": True, "vision_lr": 3e-6})
    counts = configure_trainable(model, cfg2)
    assert counts["llm"] == 0 and counts["vision"] > 0 and counts["conv"] == 6 * 3 * 64 * 27  # convs still train
    assert {g["kind"]: g["lr"] for g in parameter_groups(model, cfg2)} == {"ttt": 1e-5, "conv": 1e-6, "vision": 3e-6}


def test_cosine_schedule_with_floor():
    assert lr_factor(0, 100, 10, 0.1) == 0.0
    assert lr_factor(5, 100, 10, 0.1) == pytest.approx(0.5)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    model = tiny_model()
    cfg = load_config(None, {"lr": 1e-6, "lact_lr": 1e-5, "warmup_ratio": 0.1})
    configure_trainable(model, cfg)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 20)
    lrs = []
    for _ in range(20):
        lrs.append({g["kind"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert lrs[0]["ttt"] == 0 and lrs[2]["ttt"] == pytest.approx(1e-5) and lrs[2]["llm"] == pytest.approx(1e-6)
    assert lrs[-1]["ttt"] > 1e-6 and torch.tensor([x["ttt"] for x in lrs[2:]]).diff().le(0).all()


def test_training_starts_from_a_released_folder_with_model_settings_as_overrides(released_dir):
    """A released folder loads as it is (no conversion); model_settings override its settings, e.g. Muon back on
    for training as the released recipe trained."""
    from spatial_ttt.train.trainer import load_training_model

    model = load_training_model(load_config(None, {"model": str(released_dir), "model_settings": {"use_muon": True}}))
    assert model.training and model.config.use_muon is True
    assert model.ttt_settings["use_muon"].source == "override"
    assert model.ttt_settings["ttt_layers"].value == [0, 1, 2, 4, 5, 6]
