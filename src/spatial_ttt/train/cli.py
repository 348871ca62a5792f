"""``spatial-ttt train CONFIG.yaml [--set key=value ...]``: register(app) adds the command to a typer app."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import NoReturn, Optional

import typer


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code=2)


def newest_checkpoint(output_dir: str) -> Path | None:
    from .trainer import STATE_NAME

    done = [p for p in Path(output_dir).glob("checkpoint-*") if (p / STATE_NAME).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        config: Optional[Path] = typer.Argument(None, help="YAML settings (configs/spatial_ttt_2b.yaml is the released recipe)."),
        overrides: list[str] = typer.Option([], "--set", "-s", help="Override a setting: key=value (value read as YAML)."),
        steps: Optional[int] = typer.Option(None, help="Shortcut for --set max_steps=N."),
        output_dir: Optional[str] = typer.Option(None, "--out", help="Shortcut for --set output_dir=PATH."),
    ) -> None:
        """Fine-tune Spatial-TTT on SFT conversation records (one GPU, or several under torchrun / accelerate launch).

        Ctrl-C stops it; the same command resumes from the newest checkpoint (resume: auto)."""
        from .config import load_config

        if config is not None and not config.is_file():
            fail(f"config file not found: {config}")
        items = list(overrides)
        if steps is not None:
            items.append(f"max_steps={steps}")
        if output_dir is not None:
            items.append(f"output_dir={output_dir}")
        import yaml

        try:
            settings = load_config(config, items)
        except (ValueError, TypeError, FileNotFoundError, yaml.YAMLError) as err:
            fail(str(err))
        from ..video import VideoError
        from .trainer import Trainer, TrainingDiverged

        trainer = None

        def interrupt(signum: int, frame: object) -> None:  # Python's default, plus a flag the loop checks
            if trainer is not None:
                trainer.stop_requested.set()
            raise KeyboardInterrupt

        main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers may be set
        previous = signal.signal(signal.SIGINT, interrupt) if main_thread else None
        try:
            trainer = Trainer(settings)
            first = trainer.step
            trainer.train()
            trainer.accelerator.end_training()
        except (ValueError, TypeError, FileNotFoundError, NotImplementedError, VideoError, TrainingDiverged) as err:
            fail(str(err))  # CheckpointError and bad JSON records are ValueErrors
        except KeyboardInterrupt:
            step = "before the first step" if trainer is None else f"at step {trainer.step}"
            latest = newest_checkpoint(settings.output_dir)
            where = (f"the newest checkpoint is {latest}: run the same command again to resume from it (resume: auto)"
                     if latest is not None else
                     f"no checkpoint was written yet (every {settings.save_steps} steps): a rerun starts over")
            typer.echo(f"interrupted {step}; {where}", err=True)
            raise typer.Exit(code=130) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if trainer.history:
            typer.echo(f"done: {trainer.step - first} steps this run (step {trainer.step} of {trainer.total_steps}), "
                       f"last loss {trainer.history[-1]['loss']:.4f}, output in {settings.output_dir}")


def main() -> None:
    app = typer.Typer(add_completion=False)
    register(app)

    @app.callback()
    def _root() -> None:  # keeps "train" as a named subcommand
        pass

    app()
