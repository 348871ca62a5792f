"""Render the memory task suite compactly for a device call: one video per scene (the full 16x walk) and records
for every stream length.

python benchmarks/evidence/render_suite.py OUT --train 480 --eval 100 [--procs 2]

The same scenes, questions and records as ``python -m spatial_ttt.data.memory_tasks`` (usable seeds counted up
from 0 and from HELD_OUT_SEED), but only ``videos/<seed>_16x.mp4`` is written: the 4x and 1x streams are every
4th and 16th frame of it, which run_device.py cuts out when it unpacks the videos. That is a third of the bytes
(the carried tree is limited to 64 MiB) and a third of the encoding time.
"""

from __future__ import annotations

import argparse
import json
import os
from multiprocessing import Pool
from pathlib import Path

from spatial_ttt.data.memory_tasks import HELD_OUT_SEED, STRIDES, encode_video, record, render_walk, walk_questions


def scene(job: tuple[int, str]) -> list[dict] | None:
    seed, out = job
    walk = render_walk(seed)
    per_length = walk_questions(walk, seed)
    if per_length is None:
        return None
    encode_video(walk.rgb, Path(out) / f"videos/{seed:07d}_16x.mp4")
    return [record(f"videos/{seed:07d}_{length}.mp4", per_length[length], f"{seed:07d}", length) for length in STRIDES]


def build_split(out: Path, split: str, num_scenes: int, first_seed: int, pool: Pool) -> None:
    rows: list[dict] = []
    seed = first_seed
    while len(rows) < 3 * num_scenes:
        batch = range(seed, seed + num_scenes - len(rows) // 3)
        rows += [r for recs in pool.map(scene, [(s, str(out)) for s in batch], chunksize=4) if recs for r in recs]
        seed = batch.stop
    rows = rows[: 3 * num_scenes]
    path = out / f"{split}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    print(f"{path}: {len(rows)} records of {num_scenes} scenes (seeds {first_seed}..{seed - 1})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    with Pool(args.procs) as pool:
        build_split(out, "eval", args.eval, HELD_OUT_SEED, pool)
        build_split(out, "train", args.train, 0, pool)


if __name__ == "__main__":
    main()
