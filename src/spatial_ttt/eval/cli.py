"""The `spatial-ttt eval` command, added to the project's Typer app by `register`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from spatial_ttt.eval.datafiles import record_files
from spatial_ttt.eval.errors import EvalError
from spatial_ttt.eval.parallel import default_device, launcher_shard
from spatial_ttt.eval.runner import BENCHMARKS, get_benchmark, run_benchmark


def fail(console: Console, message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}")
    raise typer.Exit(code=2)


def register(app: typer.Typer, load_model: Callable[..., Any]) -> None:
    """Add `eval` to `app`; `load_model(PATH, device=DEVICE)` builds the model (VideoQAModel / StreamingQAModel)."""

    @app.command("eval")
    def eval_command(
        bench: str = typer.Argument(..., help=f"Benchmark: {', '.join(BENCHMARKS)}."),
        data: Path = typer.Option(..., "--data", help="Benchmark folder (or its record file) as released."),
        model: str = typer.Option(..., "--model", help="Model checkpoint path."),
        out: Path = typer.Option(..., "--out", help="Output folder; rerunning with it resumes."),
        limit: int | None = typer.Option(None, "--limit", help="Only the first N samples."),
        sum_rooms_hint: bool = typer.Option(
            True, "--sum-rooms-hint/--no-sum-rooms-hint", help="Append the reference's multi-room counting hint."
        ),
        max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Default: the benchmark's."),
        device: str | None = typer.Option(
            None, "--device", help="Default: this process's GPU (cuda:LOCAL_RANK under torchrun), else cpu."
        ),
    ) -> None:
        """Evaluate a model on VSI-Bench, VSI-SUPER or MindCube with the official metrics."""
        from spatial_ttt.pipeline import PromptTooLongError
        from spatial_ttt.video import VideoError

        console = Console(stderr=True, soft_wrap=True)
        try:
            get_benchmark(bench)  # fail on a bad name or data path before the (slow) model load
            record_files(data)
            rank, world = launcher_shard()  # several processes (torchrun): one shard each
            loaded = load_model(model, device=device or default_device())
            summary = run_benchmark(
                bench, data, loaded, out, limit=limit, rooms_hint=sum_rooms_hint, max_new_tokens=max_new_tokens,
                progress=rank == 0, shard=(rank, world),
            )  # fmt: skip
        except EvalError as err:
            fail(console, str(err))
        except (VideoError, PromptTooLongError) as err:
            # A video that cannot be read stops the run at its first question: the answers so far are kept,
            # and the same command resumes after the file is fixed or replaced (never a silent zero score).
            fail(console, f"{err} (answers so far are saved in {out}; fix the video and rerun to resume)")
        except KeyboardInterrupt:
            console.print(f"interrupted: the answers so far are saved in {escape(str(out))}; run the same command "
                          "again to resume")
            raise typer.Exit(code=130) from None
        if summary is None:
            console.print(f"shard {rank + 1}/{world} done; the last shard to finish writes {out / 'summary.md'}")
        else:
            Console().print(Markdown(summary.to_markdown()))
