import json
import math

import pytest
import torch
from typer.testing import CliRunner
import typer

from spatial_ttt import load_model
from spatial_ttt.train import Trainer, TrainingDiverged, pack_loss
from spatial_ttt.train.cli import register


def all_packs_loss(trainer: Trainer) -> float:
    """Mean answer-token loss over every record (fixed evaluation), with the current weights."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    with torch.no_grad():
        pack = [ex for i in range(len(trainer.dataset)) for ex in trainer.dataset[i]]
        loss, _ = pack_loss(model, pack)
    model.train()
    return float(loss)


def test_loss_falls_and_checkpoint_loads(make_config):
    cfg = make_config(max_steps=6, save_steps=3, num_workers=1, gradient_checkpointing=True)
    trainer = Trainer(cfg)
    before = all_packs_loss(trainer)
    history = trainer.train()
    after = all_packs_loss(trainer)
    assert [h["step"] for h in history] == list(range(1, 7))
    assert after < before - 0.5, (before, after)
    assert all(h["grad_norm"] > 0 and h["answer_tokens"] > 0 for h in history)
    out = trainer.out
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert not list(out.glob(".tmp-*"))
    loaded = load_model(out / "checkpoint-6")  # the model format spatial_ttt loads
    trained = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [h["loss"] for h in logged] == [h["loss"] for h in history]


def test_resume_gives_the_uninterrupted_losses(make_config, tmp_path):
    settings = dict(max_steps=4, save_steps=2, grad_accum=2, packing=False, warmup_ratio=0.2)
    straight = Trainer(make_config(output_dir=str(tmp_path / "a"), **settings)).train()
    first = Trainer(make_config(output_dir=str(tmp_path / "b"), **settings))
    first.train(stop_after=3)  # "interrupted" after step 3; the last checkpoint is step 2
    assert (tmp_path / "b" / "checkpoint-2").is_dir()
    resumed = Trainer(make_config(output_dir=str(tmp_path / "b"), **settings))
    assert resumed.step == 2 and resumed.resume_from.name == "checkpoint-2"
    rest = resumed.train()
    assert [h["step"] for h in rest] == [1, 2, 3, 4]  # history carried over from the checkpoint
    for a, b in zip(straight[2:], rest[2:]):
        assert abs(a["loss"] - b["loss"]) <= 1e-6, (a, b)
        assert a["lact_lr"] == b["lact_lr"] and a["tokens"] == b["tokens"]


def test_cli_train_command(make_config, tmp_path, dataset, processor_dir):
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        pass

    cfg_file = tmp_path / "tiny.yaml"
    cfg = make_config()
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("output_dir", "max_steps")}
    import yaml

    cfg_file.write_text(yaml.safe_dump(settings))
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["train", str(cfg_file), "--set", "max_steps=2", "--set", "lact_lr=1e-3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "done: 2 steps" in result.output
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["config"]["lact_lr"] == 1e-3 and state["step"] == 2
    bad = CliRunner().invoke(app, ["train", str(cfg_file), "--set", "bogus=1"])
    assert bad.exit_code == 2 and "unknown settings: bogus" in bad.output


def poison_gradients(monkeypatch, trainer: Trainer, steps: set[int]) -> None:
    """Makes the gradients of the optimizer steps numbered in ``steps`` (1-based) NaN, as a diverging step would."""
    import spatial_ttt.train.trainer as module

    real = module.pack_loss

    def poisoned(model, pack, **kwargs):
        out = real(model, pack, **kwargs)
        if trainer.step + 1 in steps:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
                    break
        return out

    monkeypatch.setattr(module, "pack_loss", poisoned)


def test_a_non_finite_step_changes_no_weight_and_training_goes_on(make_config, monkeypatch):
    trainer = Trainer(make_config(max_steps=4))
    poison_gradients(monkeypatch, trainer, {2})
    model = trainer.accelerator.unwrap_model(trainer.model)
    trainer.train(stop_after=1)
    after_one = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train(stop_after=2)
    for key, value in model.state_dict().items():  # the skipped step applied nothing
        torch.testing.assert_close(value, after_one[key], rtol=0, atol=0)
    history = trainer.train()
    assert [h.get("skipped", False) for h in history] == [False, True, False, False]
    assert all(math.isfinite(h["loss"]) for i, h in enumerate(history) if i != 1)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert any(not torch.equal(v, after_one[k]) for k, v in model.state_dict().items())  # steps 3-4 trained again
    logged = [json.loads(line) for line in (trainer.out / "log.jsonl").read_text().splitlines()]
    assert logged[1]["skipped"] is True and "skipped" not in logged[2] and "nonfinite_trace" not in logged[1]  # watch off
    first = next(n for n, p in model.named_parameters() if p.requires_grad)  # the one poison_gradients fills
    assert logged[1]["nonfinite_grads"]["count"] == 1 and logged[1]["nonfinite_grads"]["first"][0].endswith(first)
    assert logged[1]["nonfinite_grads"]["of"] == sum(p.requires_grad for p in model.parameters())
    assert not any(name.endswith(first) for name in logged[1]["nonfinite_grads"]["finite"])
    assert len(logged[1]["nonfinite_grads"]["finite"]) == min(40, logged[1]["nonfinite_grads"]["of"] - 1)


def test_too_many_non_finite_steps_in_a_row_stop_with_an_error(make_config, monkeypatch):
    trainer = Trainer(make_config(max_steps=8, max_skipped_steps=2))
    poison_gradients(monkeypatch, trainer, {2, 3, 4, 5})
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row \(up to step 4\).*weights are those after step 1"):
        trainer.train()
    assert trainer.step == 4 and [h.get("skipped", False) for h in trainer.history] == [False, True, True, True]
    with pytest.raises(ValueError, match="max_skipped_steps must be >= 0"):
        make_config(max_skipped_steps=-1).validate()


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_trace_nonfinite_names_the_module_where_a_nan_first_appeared(make_config, where):
    trainer = Trainer(make_config(max_steps=3, trace_nonfinite=True))
    model = trainer.accelerator.unwrap_model(trainer.model)
    target = "model.language_model.layers.1.mlp"

    def poison(module, args, output):  # runs before the watch's hook on the same module (prepend)
        if trainer.step + 1 != 2:
            return None
        if where == "forward":
            return output.clone().fill_(float("nan"))
        output.register_hook(lambda grad: torch.full_like(grad, float("nan")))
        return None

    model.get_submodule(target).register_forward_hook(poison, prepend=True)
    history = trainer.train()
    assert [h.get("skipped", False) for h in history] == [False, True, False]
    trace = history[1]["nonfinite_trace"]
    assert trace[f"{where}_first"] == target and trace[f"{where}_bad"] >= 1
    if where == "backward":  # the forward was clean, the loss finite
        assert trace["forward_first"] is None and trace["forward_bad"] == 0 and math.isfinite(history[1]["loss"])
    assert "nonfinite_trace" not in history[0] and "nonfinite_trace" not in history[2]


def test_trace_nonfinite_trains_through_compiled_functions(make_config):
    """With the compiled kernel (inductor's CPU backend here, as a GPU trains) and a trainable vision tower, the
    modules called inside a compiled function (a vision block's norms, MLP) are not hooked (a gradient hook cannot
    be registered there); the block itself is."""
    settings = {**make_config().model_settings, "ttt_kernel": "compiled"}
    trainer = Trainer(make_config(max_steps=1, trace_nonfinite=True, freeze_vision=False, model_settings=settings))
    history = trainer.train()
    assert len(history) == 1 and math.isfinite(history[0]["grad_norm"])
    forward = {name for name, _ in trainer.watch.forward}
    backward = {name for name, _ in trainer.watch.backward}
    assert "model.visual.blocks.0" in forward and "model.visual.blocks.0" in backward
    assert "model.visual.blocks.0.norm1" not in forward and "model.visual.blocks.0.mlp" not in forward
    assert "model.language_model.layers.0.mlp" in forward and "lm_head" in backward
