"""``spatial-ttt train CONFIG.yaml [--set key=value ...]``: register(app) adds the command to a typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        config: Optional[Path] = typer.Argument(None, help="YAML settings (configs/spatial_ttt_2b.yaml is the released recipe)."),
        overrides: list[str] = typer.Option([], "--set", "-s", help="Override a setting: key=value (value read as YAML)."),
        steps: Optional[int] = typer.Option(None, help="Shortcut for --set max_steps=N."),
        output_dir: Optional[str] = typer.Option(None, "--out", help="Shortcut for --set output_dir=PATH."),
    ) -> None:
        """Fine-tune Spatial-TTT on SFT conversation records (one GPU, or several under torchrun / accelerate launch)."""
        from .config import load_config
        from .trainer import train

        items = list(overrides)
        if steps is not None:
            items.append(f"max_steps={steps}")
        if output_dir is not None:
            items.append(f"output_dir={output_dir}")
        try:
            settings = load_config(config, items)
        except (ValueError, FileNotFoundError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2)
        history = train(settings)
        if history:
            typer.echo(f"done: {len(history)} steps this run, last loss {history[-1]['loss']:.4f}, output in {settings.output_dir}")


def main() -> None:
    app = typer.Typer(add_completion=False)
    register(app)

    @app.callback()
    def _root() -> None:  # keeps "train" as a named subcommand
        pass

    app()
