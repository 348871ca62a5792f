"""Render the memory task suite compactly for a device call: one video per scene (the full 16x walk) and records
for every stream length.

python benchmarks/evidence/render_suite.py OUT --train 480 --eval 100 [--procs 2] [--near 0.5]

The same scenes, questions and records as ``python -m spatial_ttt.data.memory_tasks`` (usable seeds counted up
from 0 and from HELD_OUT_SEED), but only ``videos/<seed>_16x.mp4`` is written: the 4x and 1x streams are every
4th and 16th frame of it, which run_device.py cuts out when it unpacks the videos. That is a third of the bytes
(the carried tree is limited to 64 MiB) and a third of the encoding time. ``--near`` draws that share of the
training records as near clips (memory_tasks.walk_records: the curriculum); run_device.py cuts their frames from
the same 16x video.
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

from spatial_ttt.data.memory_tasks import HELD_OUT_SEED, encode_video, render_walk, video_name, walk_records
from spatial_ttt.files import atomic_write_text


def scene(job: tuple[int, str, float]) -> list[dict] | None:
    seed, out, near = job
    walk = render_walk(seed)
    records = walk_records(walk, seed, near=near)
    if records is not None:
        encode_video(walk.rgb, Path(out) / video_name(seed, "16x"))  # every frame: the 16x stream
    return records


def build_split(out: Path, split: str, num_scenes: int, first_seed: int, pool: Pool, near: float = 0.0) -> None:
    rows: list[dict] = []
    seed = first_seed
    while len(rows) < 3 * num_scenes:
        batch = range(seed, seed + num_scenes - len(rows) // 3)
        rows += [r for recs in pool.map(scene, [(s, str(out), near) for s in batch], chunksize=4) if recs for r in recs]
        seed = batch.stop
    rows = rows[: 3 * num_scenes]
    path = out / f"{split}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    near_rows = sum(1 for r in rows if r.get("near"))
    print(f"{path}: {len(rows)} records of {num_scenes} scenes (seeds {first_seed}..{seed - 1})"
          + (f", {near_rows} near" if near_rows else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--near", type=float, default=0.0, help="share of training records drawn as near clips "
                        "(the curriculum; held-out records are never near)")
    args = parser.parse_args()
    out = Path(args.out)
    with Pool(args.procs) as pool:
        build_split(out, "eval", args.eval, HELD_OUT_SEED, pool)
        build_split(out, "train", args.train, 0, pool, args.near)


if __name__ == "__main__":
    main()
