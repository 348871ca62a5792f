"""The ``spatial-ttt`` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .checkpoint import CheckpointError, checkpoint_kind, convert_qwen3vl, load_model, read_config, save_model

app = typer.Typer(add_completion=False, no_args_is_help=False, help="Spatial-TTT: streaming spatial intelligence with test-time training.")
console = Console(stderr=True)


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """With no command: run the whole pipeline on an embedded tiny model and a synthetic video."""
    if ctx.invoked_subcommand is None:
        from .demo import run_demo

        run_demo(console)


@app.command()
def info(model: Path = typer.Argument(..., help="A checkpoint folder (reference format, ours or Qwen3-VL).")) -> None:
    """Show what a checkpoint holds: format, architecture, TTT settings and parameter counts."""
    try:
        config = read_config(model)
        kind = checkpoint_kind(config)
        loaded = None if kind == "qwen3_vl" else load_model(model)
    except (CheckpointError, ValueError) as err:
        fail(str(err))
    table = Table(title=f"{model} ({kind} format)")
    table.add_column("setting")
    table.add_column("value")
    if loaded is None:
        text = config.get("text_config", {})
        table.add_row("layers", str(text.get("num_hidden_layers")))
        table.add_row("hidden", str(text.get("hidden_size")))
        table.add_row("note", "plain Qwen3-VL: run `spatial-ttt convert` to wrap it as Spatial-TTT")
    else:
        cfg = loaded.config
        text = cfg.text_config
        ttt = [n for n, p in loaded.named_parameters() if ".self_attn." in n and ".attn_layer." not in n and "layers" in n]
        rows = {
            "layers": text.num_hidden_layers,
            "hidden / heads / kv heads / head_dim": f"{text.hidden_size} / {text.num_attention_heads} / {text.num_key_value_heads} / {text.head_dim}",
            "TTT layers": "/".join(map(str, cfg.ttt_layers)),
            "anchor layers": "/".join(str(i) for i in range(text.num_hidden_layers) if i not in cfg.ttt_layers),
            "fast-weight heads / chunk / window": f"{cfg.num_lact_heads} / {cfg.lact_chunk_size} / {cfg.window_size}",
            "muon / momentum / conv / low rank": f"{cfg.use_muon} / {cfg.use_momentum} / {cfg.use_conv_layer} / {cfg.w0_w2_low_rank}",
            "parameters (all)": f"{sum(p.numel() for p in loaded.parameters()):,}",
            "parameters (TTT)": f"{sum(loaded.get_parameter(n).numel() for n in ttt):,}",
        }
        for key, value in rows.items():
            table.add_row(key, str(value))
    Console().print(table)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="A Qwen3-VL checkpoint folder (config.json + safetensors)."),
    output: Path = typer.Argument(..., help="Where to write the Spatial-TTT checkpoint."),
    settings: Optional[str] = typer.Option(None, help='TTT settings as JSON, e.g. \'{"lact_chunk_size": 2648}\'.'),
) -> None:
    """Wrap a Qwen3-VL checkpoint as Spatial-TTT (pretrained weights kept, TTT parameters freshly initialised)."""
    try:
        overrides = json.loads(settings) if settings else {}
    except json.JSONDecodeError as err:
        fail(f"--settings is not valid JSON: {err}")
    if output.exists() and any(output.iterdir()):
        fail(f"{output} exists and is not empty")
    start = time.perf_counter()
    try:
        model = convert_qwen3vl(source, **overrides)
    except (CheckpointError, ValueError, TypeError) as err:
        fail(str(err))
    save_model(model, output)
    console.print(f"wrote {output} in {time.perf_counter() - start:.1f}s (TTT layers {model.config.ttt_layers})")


def main() -> None:
    app()
