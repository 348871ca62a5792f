"""Every ```python and ```bash block of README.md and docs/*.md runs exactly as written.

Conventions (for everyone who writes docs):

- Fences: ```python blocks run in-process with `exec`, each in a fresh namespace (a block must import and define
  what it uses); ```bash blocks run with `bash -e -o pipefail -c`, so every command must succeed (exit 0, and
  no traceback on stderr). Blocks with any other or no language (```text, ```yaml, plain ```) are not run: use
  them for output samples, file layouts and usage synopses.
- Both run with the working directory = one shared sandbox folder (session-scoped, built once), where the
  placeholders the docs use are real, small files (`SANDBOX` below lists them): MODEL and path/to/model are the
  tiny untrained model folder (make_tiny_model_folder); path/to/Qwen3-VL-2B-Instruct is the tiny processor;
  Qwen3-VL-2B-Instruct is a tiny random Qwen3-VL checkpoint (for `convert`); scene.mp4, long.mp4 and
  walkthrough.mp4 are short synthetic videos; view1.jpg, view2.jpg are images; VSI-Bench is a one-question
  benchmark copy; configs/ and tests/ are the repository's. Blocks may create files (OUT, DATASET, runs/...) but must not
  rely on another block having run. To use a new placeholder, add it to `_build_sandbox`.
- `spatial-ttt` is the installed command of the interpreter running the tests; OMP_NUM_THREADS=1.
- Keep blocks fast on a CPU: short videos are already in the sandbox; long jobs (training) use tiny settings in
  the block itself. A block that cannot run on the tiny model on a CPU (GPUs, real weights, installs) gets an
  HTML comment on the line right before its fence:  <!-- not-run: WHY -->  and is listed in NOT_RUN below
  (file -> count), so that every exception is reviewed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("python", "bash")
NOT_RUN = {"README.md": 2, "docs/evaluation.md": 3, "docs/training.md": 1}
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")


@dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    line: int  # line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, for blocks marked not-run

    @property
    def name(self) -> str:
        return f"{self.file}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file (``` fences at the start of a line; the language after the fence)."""
    found, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_RUN.search(before)
        found.append(Block(str(path.relative_to(ROOT)), i + 1, fence[1], "\n".join(lines[i + 1 : end]) + "\n",
                           marker[1] if marker else None))
        i = end + 1
    return found


ALL = [b for path in DOCS for b in blocks(path)]
RUNNABLE = [b for b in ALL if b.lang in RUN and b.not_run is None]


def test_not_run_blocks_are_counted_and_explained():
    marked = [b for b in ALL if b.not_run is not None]
    counts: dict[str, int] = {}
    for b in marked:
        assert b.lang in RUN, f"{b.name}: not-run marks a block that would not run anyway"
        counts[b.file] = counts.get(b.file, 0) + 1
    listing = "\n".join(f"{b.name}: {b.not_run}" for b in marked)
    print(f"{len(marked)} doc blocks not run:\n{listing}")
    assert counts == NOT_RUN, listing
    assert len(RUNNABLE) >= 7  # the parser finds the blocks (README alone has 5 runnable ones)


def _write_images(folder: Path) -> None:
    from PIL import Image

    from spatial_ttt.demo import synthetic_frames

    for name, frame in zip(("view1.jpg", "view2.jpg"), synthetic_frames(2, (64, 96))):
        Image.fromarray(frame).save(folder / name)


def _write_qwen3vl(folder: Path) -> None:
    """A tiny random Qwen3-VL checkpoint with the tiny processor: what `convert` expects, at test size."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from spatial_ttt.quiet import quiet_transformers
    from spatial_ttt.tiny import tiny_config
    from spatial_ttt.video import make_tiny_processor

    spatial = tiny_config()
    config = Qwen3VLConfig(
        text_config=spatial.text_config.to_dict(), vision_config=spatial.vision_config.to_dict(),
        image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503,
    )
    torch.manual_seed(0)
    with quiet_transformers():
        Qwen3VLForConditionalGeneration(config).save_pretrained(folder)
    make_tiny_processor(folder)


def _build_sandbox(root: Path) -> Path:
    from spatial_ttt.demo import write_synthetic_video
    from spatial_ttt.pipeline import make_tiny_model_folder
    from spatial_ttt.video import make_tiny_processor

    model = make_tiny_model_folder(root / "MODEL")
    (root / "path" / "to").mkdir(parents=True)
    (root / "path" / "to" / "model").symlink_to(model, target_is_directory=True)
    make_tiny_processor(root / "path" / "to" / "Qwen3-VL-2B-Instruct")
    _write_qwen3vl(root / "Qwen3-VL-2B-Instruct")
    write_synthetic_video(root / "scene.mp4", seconds=2.0, fps=4, size=(64, 96))
    write_synthetic_video(root / "long.mp4", seconds=6.0, fps=2, size=(64, 96))
    write_synthetic_video(root / "walkthrough.mp4", seconds=4.0, fps=4, size=(64, 96))
    _write_images(root)
    bench = root / "VSI-Bench"
    (bench / "scannet").mkdir(parents=True)
    write_synthetic_video(bench / "scannet" / "scene0.mp4", seconds=1.0, fps=4, size=(64, 96))
    (bench / "test.jsonl").write_text(json.dumps({
        "id": 1, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_counting",
        "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "2"}) + "\n")
    (root / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    (root / "tests").symlink_to(ROOT / "tests", target_is_directory=True)  # fixtures the docs load (golden)
    return root


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Path:
    return _build_sandbox(tmp_path_factory.mktemp("docs-sandbox"))


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.name for b in RUNNABLE])
def test_doc_block_runs_as_written(block: Block, sandbox: Path, monkeypatch):
    if block.lang == "python":
        import torch

        monkeypatch.chdir(sandbox)
        monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            exec(compile(block.code, block.name, "exec"), {"__name__": "__doc_block__"})
        finally:
            torch.set_num_threads(threads)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=sandbox, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{block.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr
