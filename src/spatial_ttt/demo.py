"""The embedded default job (`spatial-ttt` with no arguments): the whole pipeline, no downloads.

It writes a tiny *untrained* model folder (checkpoint + processor) and a short synthetic video (moving coloured
shapes, encoded with PyAV) into a temporary folder, then runs what a user would: read_video -> processor ->
model -> answer for one question, and a streaming run with questions at two different times. Each step is
printed with its timing. The answers are meaningless: the weights are random.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console

QUESTION = "How many objects are in the room?"
STREAM_QUESTIONS = ((2.0, "What is the closest object to the red square?"), (4.0, "How many objects are in the room?"))


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


def _step(console: Console, label: str, seconds: float, detail: str = "") -> None:
    console.print(f"  [cyan]{label:<28}[/] {seconds:6.2f}s  {detail}")


def run_demo(console: Console | None = None) -> None:
    """Run the embedded default job and print what it did, with timings."""
    import torch

    threads = torch.get_num_threads()
    # The tiny model's matrices are far too small to gain from threads, and on a busy machine torch's thread
    # pool makes it many times slower (waiting for descheduled workers at every op): run it on one thread.
    torch.set_num_threads(1)
    try:
        _run(console or Console())
    finally:
        torch.set_num_threads(threads)


def _run(console: Console) -> None:
    from .pipeline import SpatialTTTPipeline, make_tiny_model_folder

    total = time.perf_counter()
    console.print(
        "[bold]spatial-ttt[/] embedded default: a tiny [bold yellow]UNTRAINED[/] model (random weights) on a "
        "synthetic video.\n[yellow]The answers below are meaningless: this model is untrained. It shows the pipeline "
        "running end to end.[/] For real answers: [bold]spatial-ttt ask MODEL_FOLDER VIDEO \"question\"[/]."
    )
    with tempfile.TemporaryDirectory(prefix="spatial-ttt-demo-") as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        folder = make_tiny_model_folder(tmp_path / "tiny-model")
        _step(console, "write tiny model folder", time.perf_counter() - start, f"{folder.name}/ (checkpoint + processor)")

        start = time.perf_counter()
        video = write_synthetic_video(tmp_path / "synthetic.mp4", seconds=4.0, fps=8)
        _step(console, "write synthetic video", time.perf_counter() - start, "4 s, 8 fps, 352x480, moving shapes (PyAV)")

        start = time.perf_counter()
        pipe = SpatialTTTPipeline.from_pretrained(folder, num_frames=8, stream_fps=2.0, chunk_frames=4)
        params = sum(p.numel() for p in pipe.model.parameters())
        _step(
            console, "load model + processor", time.perf_counter() - start,
            f"{params:,} parameters, {pipe.model.config.text_config.num_hidden_layers} layers, "
            f"TTT layers {pipe.model.config.ttt_layers}",
        )

        console.print(f"[bold]ask[/] (one shot): {QUESTION!r}")
        clip, seconds = _timed(lambda: pipe.read(video))
        _step(console, "read_video", seconds, f"{clip.num_frames} frames {clip.size[0]}x{clip.size[1]}, "
              f"t = {clip.timestamps[0]:.2f}..{clip.timestamps[-1]:.2f} s")
        from .pipeline import build_prompt

        inputs, seconds = _timed(lambda: pipe.inputs(clip, build_prompt(QUESTION)))
        tokens = int(inputs["input_ids"].shape[1])
        _step(console, "processor", seconds, f"{tokens} prompt tokens ({clip.num_frames // 2} frame pairs x "
              f"{pipe.processor.tokens_per_group(*clip.size)} video tokens + text)")
        new, seconds = _timed(lambda: pipe.generate(inputs, max_new_tokens=8))
        _step(console, "model: prefill + generate", seconds, f"{len(new)} new tokens")
        console.print(f"  answer (untrained model): {pipe.decode(new)!r}  token ids {new}")

        console.print(f"[bold]stream[/]: video fed at 2 fps in chunks of 4 frames, questions at "
                      f"{', '.join(f'{t:g} s' for t, _ in STREAM_QUESTIONS)}")
        try:
            stream = pipe.open_stream()
        except ImportError as err:  # the streaming engine is not available in this build
            console.print(f"  [yellow]streaming skipped: {err}[/]")
        else:
            fed = 0.0
            for at, question in STREAM_QUESTIONS:
                _, seconds = _timed(lambda: stream.observe_video(video, fed, at))
                _step(console, f"observe {fed:g}-{at:g} s", seconds, f"{stream.num_frames} frames in memory so far")
                fed = at
                text, seconds = _timed(lambda: stream.ask(build_prompt(question), max_new_tokens=8))
                _step(console, f"ask at {at:g} s", seconds, f"{question!r} -> {text!r} (untrained)")
            stream.close()
    console.print(f"done in {time.perf_counter() - total:.2f}s. The model is untrained, so the answers are noise; "
                  "load a trained Spatial-TTT folder with [bold]spatial-ttt ask[/] / [bold]spatial-ttt stream[/].")


def _timed(fn: Callable):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
