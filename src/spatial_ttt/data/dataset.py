"""End-to-end builders: synthetic scenes -> videos + annotations + SFT shards, and annotated scenes -> shards.

Layout of a synthetic dataset folder (the folder is the trainer's data_path):
  scenes/scene_00000/video.mp4, scene.json (annotation incl. visibility), records.jsonl
  sft/sft-00000.jsonl, ...   (records' "video" paths are relative to the dataset folder)
Each scene folder is built in a temporary folder and renamed into place, so an interrupted run leaves only
complete scenes; running again skips them (resume) and rewrites the shards.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .readers import read_scene
from .render import render_scene
from .scene import save_scene
from .sft import build_sft_records, read_jsonl, write_jsonl, write_sft_shards
from .synth import CATEGORIES, sample_scene

PALETTE = {name: c.color for name, c in CATEGORIES.items()}


def scene_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Seed of scene index: independent of how many scenes are generated, so runs can grow and resume."""
    return np.random.SeedSequence([seed, index])


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=True)


def generate_synthetic_dataset(out_dir: str | Path, num_scenes: int, frames_per_scene: int = 32, seed: int = 0,
                               num_rooms: int = 1, width: int = 320, height: int = 240, fps: float = 10.0,
                               qa_per_type: int = 3, shard_size: int = 1000,
                               progress: bool = True) -> dict[str, Any]:
    """Sample, render and annotate num_scenes scenes, then write SFT shards; returns a small summary."""
    out_dir = Path(out_dir)
    scenes_dir = out_dir / "scenes"
    scenes_dir.mkdir(parents=True, exist_ok=True)
    all_records, built = [], 0
    with _progress(progress) as bar:
        scenes_task = bar.add_task("scenes", total=num_scenes)
        for i in range(num_scenes):
            name = f"scene_{i:05d}"
            final = scenes_dir / name
            if not (final / "records.jsonl").exists():
                tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=scenes_dir))
                try:
                    synth = sample_scene(scene_seed(seed, i), name, frames_per_scene, num_rooms, width, height, fps)
                    frames_task = bar.add_task(f"  render {name}", total=frames_per_scene)
                    scene = render_scene(synth.scene, synth.shell, tmp / "video.mp4", PALETTE,
                                         on_frame=lambda _: bar.advance(frames_task))
                    bar.remove_task(frames_task)
                    save_scene(scene, tmp / "scene.json")
                    records = build_sft_records(scene, f"scenes/{name}/video.mp4", seed * 100003 + i, qa_per_type)
                    write_jsonl(records, tmp / "records.jsonl")
                    if final.exists():  # a folder without records.jsonl is left from a foreign/older run
                        shutil.rmtree(final)
                    tmp.chmod(0o755)  # mkdtemp makes 0700 folders
                    tmp.rename(final)
                    built += 1
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp)
            all_records.extend(read_jsonl(final / "records.jsonl"))
            bar.advance(scenes_task)
    shards = write_sft_shards(all_records, out_dir / "sft", shard_size)
    return {"scenes": num_scenes, "built": built, "reused": num_scenes - built, "records": len(all_records),
            "shards": [str(p) for p in shards]}


def build_dataset_from_annotations(scene_path: str | Path, out_dir: str | Path, video: str, seed: int = 0,
                                   qa_per_type: int = 3, shard_size: int = 1000, *,
                                   label_map: str | Path | None = None, allow_unaligned: bool = False) -> dict[str, Any]:
    """Read one annotated scene (any supported layout), write its descriptions and QA as SFT shards.

    video is stored in the records as given: the scene's video path relative to the dataset's data_path;
    label_map and allow_unaligned go to read_scene.
    """
    scene = read_scene(scene_path, label_map=label_map, allow_unaligned=allow_unaligned)
    records = build_sft_records(scene, video, seed, qa_per_type)
    shards = write_sft_shards(records, out_dir, shard_size, prefix=f"sft-{scene.scene_id}")
    return {"scene_id": scene.scene_id, "objects": len(scene.objects), "frames": len(scene.frames),
            "records": len(records), "shards": [str(p) for p in shards]}
