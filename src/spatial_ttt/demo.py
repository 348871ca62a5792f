"""The embedded default job (`spatial-ttt` with no arguments): a small model trained here answers memory questions.

The model in ``assets/evidence_model`` was trained from scratch on the memory task suite (rendered two-room walks,
benchmarks/EVIDENCE.md says how and how well). The job renders a held-out walk (a scene never trained on),
writes and reads it back as a video, streams it into the model, asks the suite's four questions one after another
and prints each answer beside the truth, with timings. No downloads; a few seconds on a CPU.

``synthetic_frames`` / ``write_synthetic_video`` make a moving-shapes video in code, for tests and examples.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console

DEMO_SEED_OFFSET = 0  # the first held-out scene
DEMO_LENGTH = "4x"  # 64 frames, about 4 attention windows


def embedded_model_folder() -> Path:
    """The packaged model folder (checkpoint + processor files + provenance.json)."""
    return Path(str(resources.files("spatial_ttt") / "assets" / "evidence_model"))


def synthetic_frames(num_frames: int, size: tuple[int, int] = (352, 480)) -> np.ndarray:
    """uint8 [T, H, W, 3]: a red square moving right, a green disc moving down and a blue bar sweeping across a
    grey floor with a horizon, so consecutive frames differ and there is something to look at."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    for i in range(num_frames):
        p = i / max(1, num_frames - 1)
        img = np.where((yy < h * 0.45)[..., None], np.array([70, 110, 160]), np.array([120, 120, 110])).astype(np.uint8)
        x0, y0, s = int(0.1 * w + 0.6 * w * p), int(0.55 * h), h // 6
        img[y0 : y0 + s, x0 : x0 + s] = (220, 40, 40)
        cy, cx, r = int(0.2 * h + 0.6 * h * p), int(0.7 * w), h // 10
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (40, 200, 60)
        bx = int(w * (1 - p) * 0.8)
        img[int(0.3 * h) : int(0.9 * h), bx : bx + w // 20] = (40, 60, 220)
        frames[i] = img
    return frames


def write_synthetic_video(
    path: str | Path, *, seconds: float = 4.0, fps: int = 8, size: tuple[int, int] = (352, 480)
) -> Path:
    """Encode synthetic_frames as an MPEG-4 video with PyAV (made in code: no downloads)."""
    import av

    path = Path(path)
    frames = synthetic_frames(int(round(seconds * fps)), size)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def run_demo(console: Console | None = None) -> None:
    """Run the embedded default job and print what it did, with timings."""
    import torch

    threads = torch.get_num_threads()
    # The small model's matrices are far too small to gain from threads, and on a busy machine torch's thread
    # pool makes it many times slower (waiting for descheduled workers at every op): run it on one thread.
    torch.set_num_threads(1)
    try:
        _run(console or Console())
    finally:
        torch.set_num_threads(threads)


def _run(console: Console) -> None:
    from .checkpoint import load_model
    from .data.memory_tasks import HELD_OUT_SEED, STRIDES, scene_records
    from .eval.memory_suite import answer_turns, suite_encoder
    from .video import SpatialTTTProcessor

    total = time.perf_counter()
    folder = embedded_model_folder()
    provenance = json.loads((folder / "provenance.json").read_text())
    console.print(
        "[bold]spatial-ttt[/] embedded default: a small model [bold]trained here[/] on rendered walks "
        f"({provenance['summary']}), answering memory questions about a held-out walk it has never seen."
    )
    start = time.perf_counter()
    model = load_model(folder).eval()
    processor = SpatialTTTProcessor.from_pretrained(folder)
    cfg = model.config
    branch = "on" if cfg.ttt_branch else "off: the sliding-window variant"
    layers = cfg.text_config.num_hidden_layers
    anchors = [i for i in range(layers) if i not in cfg.ttt_layers]  # full attention over the whole stream
    _step(console, "load embedded model", time.perf_counter() - start,
          f"{sum(p.numel() for p in model.parameters()):,} parameters, {layers} layers, "
          f"TTT layers {cfg.ttt_layers} (fast-weight branch {branch}), window {cfg.window_size} tokens"
          + (f", full-attention anchor layers {anchors}" if anchors else ""))

    with tempfile.TemporaryDirectory(prefix="spatial-ttt-demo-") as tmp:
        seed = HELD_OUT_SEED + DEMO_SEED_OFFSET
        records, seconds = _timed(lambda: scene_records(seed, Path(tmp), lengths=(DEMO_LENGTH,)))
        record = records[0]
        _step(console, "render held-out walk", seconds, f"scene {seed}: two rooms, {256 // STRIDES[DEMO_LENGTH]} "
              f"frames 96x64 (every {STRIDES[DEMO_LENGTH]}th of the walk), H.264")
        encoder = suite_encoder(processor, tmp)
        answers, seconds = _timed(lambda: answer_turns(model, encoder, record))
        tokens = int(encoder.encode(record)["input_ids"].shape[0])
        _step(console, "stream + answer", seconds, f"{tokens} tokens ({tokens / cfg.window_size:.1f} windows): video "
              "and questions through one model state, greedy answers")
    turns = record["conversations"]
    right = 0
    for task, question, truth, answer in zip(record["tasks"], turns[0::2], turns[1::2], answers):
        ok = answer == truth["value"]
        right += ok
        mark = "[green]right[/]" if ok else "[red]wrong[/]"
        console.print(f"  {task:<10} {question['value'].removeprefix('<video>').strip():<52} "
                      f"model: {answer!r:<14} truth: {truth['value']!r:<14} {mark}")
    console.print(f"{right}/{len(answers)} right on this walk. On {provenance['eval_questions']} held-out questions this "
                  f"model scores {100 * provenance['eval_accuracy']:.1f}% (always giving the most common training answer: "
                  f"{100 * provenance['prior_accuracy']:.1f}%); benchmarks/EVIDENCE.md has the study.")
    console.print(f"done in {time.perf_counter() - total:.2f}s. Your own model and video: "
                  "[bold]spatial-ttt ask MODEL_FOLDER VIDEO \"question\"[/].")


def _step(console: Console, label: str, seconds: float, detail: str = "") -> None:
    console.print(f"  [cyan]{label:<28}[/] {seconds:6.2f}s  {detail}")


def _timed(fn: Callable):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
