"""`spatial-ttt data ...` commands; register(app) adds them to the project's Typer app."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from .scene import SceneValidationError


def register(app: typer.Typer) -> None:
    """Add the `data` command group to app."""
    data = typer.Typer(help="Build training data: synthetic scenes, dense scene descriptions and spatial QA.",
                       no_args_is_help=True)
    console = Console(stderr=True, soft_wrap=True)  # never break file paths in error messages
    label_map_option = typer.Option(None, "--label-map", help="Label map for raw labels: ScanNet's "
                                    "scannetv2-labels.combined.tsv format or JSON {\"raw\": \"category\" or null}.")
    unaligned_option = typer.Option(False, "--allow-unaligned", help="Accept a ScanNet scan without axisAlignment "
                                    "(measures in the raw scan frame).")

    @data.command("synth")
    def synth(
        out: Path = typer.Argument(..., help="Dataset folder to create (becomes the trainer's data_path)."),
        scenes: int = typer.Option(10, "--scenes", min=1, help="Number of scenes."),
        frames: int = typer.Option(32, "--frames", min=1, help="Frames per scene video."),
        rooms: int = typer.Option(1, "--rooms", min=1, help="Rooms per scene (>1 gives long multi-room streams)."),
        seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same dataset."),
        width: int = typer.Option(320, "--width", min=16, help="Frame width in pixels (even)."),
        height: int = typer.Option(240, "--height", min=16, help="Frame height in pixels (even)."),
        fps: float = typer.Option(10.0, "--fps", help="Video frame rate."),
        qa_per_type: int = typer.Option(3, "--qa-per-type", min=0, help="Questions per VSI-Bench type per scene."),
        shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Records per JSONL shard."),
    ) -> None:
        """Render synthetic scenes to videos with exact annotations, descriptions and QA (resumable)."""
        from .dataset import generate_synthetic_dataset

        summary = generate_synthetic_dataset(out, scenes, frames, seed, rooms, width, height, fps, qa_per_type,
                                             shard_size, progress=console.is_terminal)  # no bar in logs
        typer.echo(f"{summary['scenes']} scenes ({summary['built']} built, {summary['reused']} reused), "
                   f"{summary['records']} records in {len(summary['shards'])} shard(s) under {out / 'sft'}")

    @data.command("qa")
    def qa(
        scene: Path = typer.Argument(..., help="Annotation: ScanNet-style folder, box-list JSON or scene.json."),
        out: Path = typer.Argument(..., help="Folder for the SFT shards."),
        video: str = typer.Option("video.mp4", "--video", help="The scene's video path, relative to data_path."),
        seed: int = typer.Option(0, "--seed", help="Seed for question sampling and phrasing."),
        qa_per_type: int = typer.Option(3, "--qa-per-type", min=0, help="Questions per VSI-Bench type."),
        shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Records per JSONL shard."),
        label_map: Path | None = label_map_option,
        allow_unaligned: bool = unaligned_option,
    ) -> None:
        """Write a dense description and spatial QA for one annotated scene as SFT shards."""
        from .dataset import build_dataset_from_annotations

        try:
            summary = build_dataset_from_annotations(scene, out, video, seed, qa_per_type, shard_size,
                                                     label_map=label_map, allow_unaligned=allow_unaligned)
        except SceneValidationError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from None
        typer.echo(f"{summary['scene_id']}: {summary['records']} records in {len(summary['shards'])} shard(s)")

    @data.command("validate")
    def validate(
        scene: Path = typer.Argument(..., help="Annotation to check (any supported layout)."),
        label_map: Path | None = label_map_option,
        allow_unaligned: bool = unaligned_option,
    ) -> None:
        """Read and validate an annotation; print a one-line summary or the problem."""
        from .readers import read_scene

        try:
            s = read_scene(scene, label_map=label_map, allow_unaligned=allow_unaligned)
        except SceneValidationError as e:
            console.print(f"[red]error:[/red] {e}")  # one line and exit 2, as every command's bad input
            raise typer.Exit(2) from None
        typer.echo(f"{s.scene_id}: {len(s.rooms)} room(s), {s.total_area():.1f} m2, {len(s.objects)} objects in "
                   f"{len(s.categories())} categories, {len(s.frames)} frames")

    app.add_typer(data, name="data")
