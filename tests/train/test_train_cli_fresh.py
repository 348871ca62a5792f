"""The train command as a new user meets it (issue 11): clear errors for missing inputs, the right "done" count
after a resume, progress and a resume hint on Ctrl-C, DataLoader workers within the cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from spatial_ttt.train.cli import register
from spatial_ttt.train.trainer import usable_workers

SRC = Path(__file__).resolve().parents[2] / "src"


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        pass

    return app


def _config_file(make_config, tmp_path, **overrides) -> Path:
    settings = {k: v for k, v in make_config(**overrides).to_dict().items() if k != "max_steps"}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_missing_model_or_data_is_one_error_line(make_config, tmp_path):
    config = _config_file(make_config, tmp_path)
    for setting, message in (
        (f"model={tmp_path / 'Qwen3-VL-2B-Instruct'}", f"error: model folder not found: {tmp_path / 'Qwen3-VL-2B-Instruct'}"),
        (f"data_path={tmp_path / 'nodata'}", f"error: data folder not found: {tmp_path / 'nodata'}"),
        ("processor=/no/processor", "error: processor folder not found: /no/processor"),
    ):
        result = CliRunner().invoke(_app(), ["train", str(config), "--set", setting])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1, result.stderr
    result = CliRunner().invoke(_app(), ["train", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and f"error: config file not found: {tmp_path / 'none.yaml'}" in result.stderr


def test_done_counts_the_steps_of_this_run(make_config, tmp_path):
    config = _config_file(make_config, tmp_path, save_steps=1)
    out = tmp_path / "run"
    first = CliRunner().invoke(_app(), ["train", str(config), "--steps", "2", "--out", str(out)])
    assert "done: 2 steps this run (step 2 of 2)" in first.stdout, first.output
    resumed = CliRunner().invoke(_app(), ["train", str(config), "--steps", "3", "--out", str(out)])
    assert "done: 1 steps this run (step 3 of 3)" in resumed.stdout, resumed.output  # before: "done: 3 steps"


def test_ctrl_c_says_how_to_resume(make_config, tmp_path):
    config = _config_file(make_config, tmp_path, save_steps=1, progress_every_s=0)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "spatial_ttt", "train", str(config), "--steps", "1000",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint-2" / "trainer_state.json").is_file():  # progress lines come meanwhile
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # still running: say what it printed last, and do not leave it behind
        proc.kill()
        raise AssertionError("no exit 120 s after Ctrl-C:\n" + proc.communicate()[1][-3000:]) from None
    assert proc.returncode == 130, stderr
    assert "step 1/1000: pack 1/1, sequence 1/" in stderr  # the heartbeat inside steps
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and "run the same command again to resume from it" in last
    assert f"the newest checkpoint is {out}/checkpoint-" in last
    assert "Traceback" not in stderr


def test_workers_are_capped_to_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert usable_workers(1000) == cores - 1
    assert usable_workers(0) == 0


def test_a_stop_request_ends_training_at_the_next_step(make_config, tmp_path):
    """The train command's Ctrl-C handler also sets Trainer.stop_requested: even where Python swallows the
    KeyboardInterrupt itself (raised inside a finaliser), the loop raises it at the next step or sequence."""
    import pytest

    from spatial_ttt.train.trainer import Trainer

    trainer = Trainer(make_config(max_steps=5, save_steps=1, output_dir=str(tmp_path / "run")))
    save = trainer.save_checkpoint

    def save_then_ask_to_stop():  # as if Ctrl-C came during step 1 and its exception was lost
        path = save()
        trainer.stop_requested.set()
        return path

    trainer.save_checkpoint = save_then_ask_to_stop
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.step == 1 and [h["step"] for h in trainer.history] == [1]
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-1"]
