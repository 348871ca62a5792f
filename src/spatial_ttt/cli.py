"""The ``spatial-ttt`` command line.

    spatial-ttt                                   embedded default: tiny untrained model + synthetic video
    spatial-ttt ask MODEL VIDEO "question"        one answer about a video (file, image folder)
    spatial-ttt stream MODEL VIDEO --at 12.5 "q"  feed a long video, ask at given times
    spatial-ttt info MODEL | convert QWEN3VL OUT | eval BENCH ... | data ...
    spatial-ttt serve MODEL                       live video sessions over HTTP, web page at / (docs/serving.md)

Errors in what the user gave (missing/corrupt files, a folder that is no model, bad options) print one line
naming the file and exit with code 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


# torch, transformers and the model are imported inside the commands: `--help` and argument errors stay fast.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Spatial-TTT: streaming spatial intelligence with test-time training. "
    "Run without a command for the embedded default (tiny untrained model, synthetic video).",
)
console = Console(stderr=True, soft_wrap=True)  # progress, timings and errors; answers go to stdout
out = Console(soft_wrap=True)



def fail(message: str) -> NoReturn:
    """One `error:` line on stderr (messages from libraries may span lines: joined), exit code 2."""
    line = re.sub(r"\s*\n\s*", " ", message.strip())
    console.print(f"[bold red]error:[/] {escape(line)}")
    raise typer.Exit(code=2)


def note(message: str) -> None:
    console.print(f"[yellow]note:[/] {escape(message)}")


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """With no command: the embedded small trained model answers memory questions about a held-out rendered walk."""
    if ctx.invoked_subcommand is None:
        from .demo import run_demo

        run_demo(out)


# ------------------------------------------------------------------------------------------------------------------
# info / convert


def _processor_status(folder: Path) -> str:
    from .video.processing import _missing_files

    missing = _missing_files(folder)
    return "present" if not missing else f"missing {', '.join(missing)} (pass --processor DIR to ask/stream)"


# TTT setting overrides, shared by info / ask / stream (spatial_ttt.load_model keywords).
BaseOpt = typer.Option(
    None, "--base", help="A plain Qwen3-VL folder to lay MODEL (a checkpoint file or folder) over, as the reference loads.")
MuonOpt = typer.Option(
    None, "--muon/--no-muon", help="Newton-Schulz on the fast-weight updates at inference (use_muon). "
    "Default: the checkpoint's; off for released checkpoints, as the released evaluation ran.", show_default=False)
PrecisionOpt = typer.Option(None, "--precision", help="Fast-weight products: fp32 (exact, default) or bf16 (fast).")
ChunkOpt = typer.Option(None, "--chunk-size", min=1, help="TTT chunk size in tokens (lact_chunk_size).")
WindowOpt = typer.Option(None, "--window", min=1, help="Sliding-window attention width in tokens (window_size).")
TTTOpt = typer.Option(None, "--ttt", metavar="KEY=VALUE", help="Any TTT setting, e.g. --ttt ttt_kernel=reference. Repeat.")


def _one_off(overrides: dict[str, Any]) -> dict[str, Any]:
    """Settings for a command that answers a few questions and exits: eager decoding and the reference kernels
    unless --ttt names others. On CUDA "auto" compiles per process: the graphed decode step's layers (7-9 s on a
    cold cache on an H200, earned back after ~100-150 tokens against eager's ~50-90 ms/token; a spatial answer is a
    few) and the prefill's chunk graphs, vision blocks, norms and rope (~120 s before the first answer at 1024
    frames), which one video's answers never earn back (the compiled prefill is ~1-2 s faster at 1024 frames;
    benchmarks/RESULTS.md); a server or an evaluation keeps "auto"."""
    return {"decode_kernel": "eager", "ttt_kernel": "reference", **overrides}


def _ttt_overrides(
    muon: bool | None, precision: str | None, chunk_size: int | None, window: int | None, ttt: list[str] | None
) -> dict[str, Any]:
    """The TTT settings given on the command line (values of --ttt read as YAML: true, 56, fp32, [0, 1])."""
    import yaml

    from .layouts import TTT_SETTINGS

    given = {"use_muon": muon, "fast_weight_precision": precision, "lact_chunk_size": chunk_size, "window_size": window}
    overrides = {k: v for k, v in given.items() if v is not None}
    for item in ttt or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--ttt {item!r}: write KEY=VALUE, e.g. --ttt lact_chunk_size=56")
        if key not in TTT_SETTINGS:
            fail(f"--ttt {key}: unknown TTT setting (known: {', '.join(TTT_SETTINGS)})")
        if key in overrides:
            fail(f"--ttt {key} is given twice")
        try:
            overrides[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            fail(f"--ttt {item!r}: cannot read the value {raw!r}")
    return overrides


@app.command()
def info(
    model: Path = typer.Argument(..., help="A checkpoint folder (ours, the released layout, a fixture, or Qwen3-VL)."),
    base: Optional[Path] = BaseOpt,
    muon: Optional[bool] = MuonOpt,
    precision: Optional[str] = PrecisionOpt,
    chunk_size: Optional[int] = ChunkOpt,
    window: Optional[int] = WindowOpt,
    ttt: Optional[list[str]] = TTTOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the layout and the TTT settings in effect as JSON."),
) -> None:
    """Show what a checkpoint holds: layout, architecture, every TTT setting in effect with its source, and
    parameter counts."""
    from .checkpoint import CheckpointError, load_model, read_config, settings_in_effect
    from .layouts import folder_layout
    from .train.optim import parameter_kind

    if not model.exists():
        fail(f"model folder not found: {model}")
    overrides = _ttt_overrides(muon, precision, chunk_size, window, ttt)
    try:
        if base is None:
            config = read_config(model)
            layout = folder_layout(model, config)
        else:
            layout, config = "checkpoint over base", read_config(base)
        loaded = None if layout == "qwen3_vl" else load_model(model, base=base, **overrides)
    except (CheckpointError, ValueError, TypeError) as err:
        fail(str(err))
    if as_json:
        settings = {} if loaded is None else _settings_json(loaded)
        out.print_json(json.dumps({"layout": layout, "ttt_settings": settings}))
        return
    table = Table(title=f"{model} ({layout} layout)")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    if loaded is None:
        text = config.get("text_config", {})
        table.add_row("layers", str(text.get("num_hidden_layers")), "")
        table.add_row("hidden", str(text.get("hidden_size")), "")
        table.add_row("note", "plain Qwen3-VL: run `spatial-ttt convert` to wrap it as Spatial-TTT", "")
    else:
        cfg = loaded.config
        text = cfg.text_config
        layers = set(cfg.ttt_layers)
        counts: dict[str, int] = {}
        for name, param in loaded.named_parameters():
            kind = parameter_kind(name, layers)
            counts[kind] = counts.get(kind, 0) + param.numel()
        rows = {
            "layers": text.num_hidden_layers,
            "hidden / heads / kv heads / head_dim": f"{text.hidden_size} / {text.num_attention_heads} / {text.num_key_value_heads} / {text.head_dim}",
            "vocabulary": text.vocab_size,
            "anchor layers": "/".join(str(i) for i in range(text.num_hidden_layers) if i not in layers),
            "parameters (all)": f"{sum(p.numel() for p in loaded.parameters()):,}",
            "parameters (TTT, trained at lact_lr)": f"{counts.get('ttt', 0):,}",
            "parameters (TTT conv_q/k/v, trained at lr)": f"{counts.get('conv', 0):,}",
            "parameters (language model, at lr)": f"{counts.get('llm', 0):,}",
            "parameters (vision)": f"{counts.get('vision', 0):,}",
        }
        for key, value in rows.items():
            table.add_row(key, str(value), "")
        for name, setting in settings_in_effect(loaded).items():
            value = "/".join(map(str, setting.value)) if name == "ttt_layers" else str(setting.value)
            table.add_row(name, value, setting.source)
    table.add_row("processor files", _processor_status(model if model.is_dir() else base), "")
    out.print(table)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="A Qwen3-VL checkpoint folder (config.json + safetensors)."),
    output: Path = typer.Argument(..., help="Where to write the Spatial-TTT checkpoint."),
    settings: Optional[str] = typer.Option(None, help='TTT settings as JSON, e.g. \'{"lact_chunk_size": 2648}\'.'),
) -> None:
    """Wrap a Qwen3-VL checkpoint as Spatial-TTT (pretrained weights kept, TTT parameters freshly initialised).

    Processor files found beside the source (tokenizer, chat template, preprocessor configs) are copied, so the
    output is a complete model folder for `ask` and `stream`."""
    from .checkpoint import CheckpointError, convert_qwen3vl, copy_processor_files, save_model

    if not source.is_dir():
        fail(f"model folder not found: {source}")
    try:
        overrides = json.loads(settings) if settings else {}
    except json.JSONDecodeError as err:
        fail(f"--settings is not valid JSON: {err}")
    if not isinstance(overrides, dict):
        fail("--settings must be a JSON object, e.g. '{\"lact_chunk_size\": 2648}'")
    from .quiet import quiet_transformers

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        fail(f"{output} exists and is not empty")
    start = time.perf_counter()
    try:
        with _spinner(f"converting {source}"):
            model = convert_qwen3vl(source, **overrides)
    except (CheckpointError, ValueError, TypeError) as err:
        fail(str(err))
    with _spinner(f"writing {output}"), quiet_transformers():
        save_model(model, output)
        copied = copy_processor_files(source, output)  # so that the output is a complete model folder
    console.print(
        f"wrote {escape(str(output))} in {time.perf_counter() - start:.1f}s (TTT layers {model.config.ttt_layers}; "
        f"{len(copied)} processor files copied)"
    )


# ------------------------------------------------------------------------------------------------------------------
# ask / stream

ModelArg = typer.Argument(..., help="Model folder: checkpoint (config.json + safetensors) and processor files.")
VideoArg = typer.Argument(..., help="A video file, or a folder of images (read as 1 frame per second).")
ProcessorOpt = typer.Option(None, "--processor", help="Folder with the processor files, if not in MODEL.")
DeviceOpt = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda.")
DtypeOpt = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16.")
OptionsOpt = typer.Option(None, "--options", "-o", help='A multiple-choice option like "A. chair"; repeat per option.')
RawOpt = typer.Option(False, "--raw", help="Send the question as it is, without the evaluation's prompt text.")
MaxNewOpt = typer.Option(16, "--max-new-tokens", min=1, help="Most tokens to generate.")
SizeOpt = typer.Option("352x480", "--size", help="Frame size HxW (multiples of 32) every frame is resized to.")

_OPTION = re.compile(r"^[A-Z][.)] ?\S")
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


@contextmanager
def _spinner(label: str) -> Iterator[None]:
    if not console.is_terminal:  # a log file gets no spinner frames and no blank line where it stood
        yield
        return
    label = escape(label)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        progress.add_task(label, total=None)
        yield


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[x,](\d+)", text.strip().lower())
    if not match:
        fail(f"--size must look like 352x480 (height x width), got {text!r}")
    h, w = int(match[1]), int(match[2])
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        fail(f"--size {h}x{w}: height and width must be positive multiples of 32 (patch 16 x merge 2)")
    return h, w


def _question_text(question: str) -> str:
    """The question as given, or read from stdin (`-`) or a file (`@FILE`): long questions exceed the shell's
    argument limit."""
    if question == "-":
        return sys.stdin.read()
    if question.startswith("@") and len(question) > 1:
        path = Path(question[1:])
        if not path.is_file():
            fail(f"question file not found: {path} (a question starting with @ names a file)")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            fail(f"cannot read the question from {path}: {err}")
    return question


def _prompt(question: str, options: list[str] | None, raw: bool) -> str:
    from .pipeline import build_prompt

    question = _question_text(question).strip()
    if not question:
        fail("the question is empty")
    for option in options or []:
        if not _OPTION.match(option):
            fail(f'--options {option!r}: write each option as a letter, a dot and the text, e.g. "A. chair"')
    if raw:
        if options:
            fail("--raw sends the question as it is: put the options in the question instead of --options")
        return question
    return build_prompt(question, options)


def _load_pipeline(
    model: Path, processor: Path | None, device: str, dtype: str, base: Path | None, ttt: dict[str, Any], **settings: Any
):
    """The pipeline on MODEL (over ``base``, with the TTT overrides ``ttt``); says the TTT settings in effect."""
    import torch

    from .checkpoint import CheckpointError
    from .pipeline import ModelFolderError, SpatialTTTPipeline

    if dtype.lower() not in _DTYPES:
        fail(f"--dtype must be one of float32, bfloat16, float16; got {dtype!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        fail(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {device}: CUDA is not available in this torch build or on this machine")
    if not model.exists():
        fail(f"model folder not found: {model}")
    if not model.is_dir() and base is None:
        fail(f"{model} is a file; MODEL must be a model folder (config.json + safetensors + processor files)")
    if base is not None and not base.is_dir():
        fail(f"base folder not found: {base}")
    if processor is not None and not processor.is_dir():
        fail(f"processor folder not found: {processor}")
    try:
        with _spinner(f"loading {model}"):
            pipe = SpatialTTTPipeline.from_pretrained(
                model, processor=processor, dtype=getattr(torch, _DTYPES[dtype.lower()]), device=device, base=base,
                ttt=ttt, **settings
            )
    except (CheckpointError, ModelFolderError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    except (RuntimeError, AssertionError) as err:  # e.g. an unavailable device
        fail(f"cannot load {model} on {device}: {err}")
    _say_settings(pipe.model)
    return pipe


def _settings_json(model) -> dict[str, Any]:
    """Every TTT setting in effect: {name: {"value", "source"}}."""
    from .checkpoint import settings_in_effect
    from .layouts import describe

    return describe(settings_in_effect(model))


def _say_settings(model) -> None:
    """The TTT settings that change the computation, with their sources, on stderr."""
    from .checkpoint import settings_in_effect
    from .layouts import summary_line

    console.print(escape(summary_line(settings_in_effect(model))))


def _check_video(video: Path) -> None:
    if not video.exists():
        fail(f"video not found: {video}")


@app.command()
def ask(
    model: Path = ModelArg,
    video: Path = VideoArg,
    question: str = typer.Argument(..., help="The question about the video; - reads it from stdin, @FILE from FILE."),
    options: Optional[list[str]] = OptionsOpt,
    raw: bool = RawOpt,
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second to sample (default 16, the evaluation's)."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", min=2, help="Sample this many frames uniformly instead."),
    max_frames: int = typer.Option(128, "--max-frames", min=2, help="Most frames to sample."),
    size: str = SizeOpt,
    max_new_tokens: int = MaxNewOpt,
    processor: Optional[Path] = ProcessorOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    base: Optional[Path] = BaseOpt,
    muon: Optional[bool] = MuonOpt,
    precision: Optional[str] = PrecisionOpt,
    chunk_size: Optional[int] = ChunkOpt,
    window: Optional[int] = WindowOpt,
    ttt: Optional[list[str]] = TTTOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the answer, prompt size, timings and TTT settings as JSON."),
) -> None:
    """Answer a question about a video: decode, preprocess, prefill, generate. The answer goes to stdout.

    Without --raw the prompt is the evaluation's: "These are frames of a video.", the question, then either the
    short-answer instruction or, with --options, the options and "Answer with the option's letter ...".
    """
    from .pipeline import EVAL_FPS, PromptTooLongError
    from .video import VideoError

    if fps is not None and not (0 < fps < math.inf):
        fail(f"--fps must be positive (and finite), got {fps}")
    if fps is not None and num_frames is not None:
        fail("give --fps or --num-frames, not both")
    if num_frames is not None and num_frames > max_frames:
        fail(f"--num-frames {num_frames} is more than --max-frames {max_frames}: raise --max-frames to sample more")
    prompt = _prompt(question, options, raw)
    hw = _size(size)
    _check_video(video)
    overrides = _one_off(_ttt_overrides(muon, precision, chunk_size, window, ttt))
    settings = dict(fps=None if num_frames else (fps or EVAL_FPS), num_frames=num_frames, max_frames=max_frames, size=hw)
    pipe = _load_pipeline(model, processor, device, dtype, base, overrides, **settings)
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        with _spinner(f"decoding {video}"):
            clip = pipe.read(video)
        timings["read video"] = time.perf_counter() - start
    except VideoError as err:
        fail(str(err))
    if num_frames is not None and clip.num_frames < round(num_frames / 2) * 2:  # the sampler rounds to even
        total = clip.frame_indices[-1] + 1 if clip.frame_indices else clip.num_frames
        note(f"--num-frames {num_frames}: {video} has only {total} frames; sampled {clip.num_frames}")
    start = time.perf_counter()
    inputs = pipe.inputs(clip, prompt)
    timings["preprocess"] = time.perf_counter() - start
    prompt_tokens = int(inputs["input_ids"].shape[1])
    start = time.perf_counter()
    try:
        with _spinner(f"prefill {prompt_tokens} tokens + generate up to {max_new_tokens}"):
            tokens = pipe.generate(inputs, max_new_tokens=max_new_tokens)
    except PromptTooLongError as err:
        fail(str(err))
    timings["generate"] = time.perf_counter() - start
    text = pipe.decode(tokens)
    if as_json:
        out.print_json(json.dumps({
            "answer": text, "prompt": prompt, "frames": clip.num_frames, "prompt_tokens": prompt_tokens,
            "new_tokens": len(tokens), "timings_s": {k: round(v, 4) for k, v in timings.items()},
            "ttt_settings": _settings_json(pipe.model),
        }))
        return
    console.print(
        f"{clip.num_frames} frames ({clip.timestamps[0]:.1f}-{clip.timestamps[-1]:.1f} s), {prompt_tokens} prompt "
        f"tokens, {len(tokens)} new; " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
    )
    typer.echo(text)


_TIME_PART = re.compile(r"\d+(\.\d*)?|\.\d+")


def _seconds(text: str) -> float:
    """'12.5', '1:30' or '1:02:03' as seconds; minutes and seconds after a colon are below 60."""
    parts = text.strip().split(":")
    if len(parts) > 3 or not all(_TIME_PART.fullmatch(p) for p in parts):
        fail(f"--at {text!r}: the time must be seconds (12.5) or [h:]mm:ss (1:30), not negative, nan or inf")
    values = [float(p) for p in parts]
    if any(v >= 60 for v in values[1:]):
        fail(f"--at {text!r}: minutes and seconds after a colon must be below 60")
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


@app.command()
def stream(
    model: Path = ModelArg,
    video: Path = typer.Argument(..., help="A video file or a folder of images (1 per second), fed in order from the start."),
    questions: Optional[list[str]] = typer.Argument(
        None, metavar="[--at TIME QUESTION]...", help="The question after each --at TIME.", show_default=False
    ),
    at: Optional[list[str]] = typer.Option(
        None, "--at", metavar="TIME",
        help='--at TIME "QUESTION": ask QUESTION after feeding the video up to TIME (seconds or \\[h:]mm:ss). '
        "Repeat. A QUESTION - is read from stdin, @FILE from FILE. Answers print as TIME<tab>answer, with "
        "newlines, tabs and backslashes in the answer escaped as \\n, \\t and \\\\.",
    ),
    options: Optional[list[str]] = OptionsOpt,
    raw: bool = RawOpt,
    fps: float = typer.Option(1.0, "--fps", help="Frames per second fed into the memory."),
    chunk_frames: int = typer.Option(16, "--chunk-frames", min=2, help="Frames per observe step (even)."),
    size: str = SizeOpt,
    max_new_tokens: int = MaxNewOpt,
    processor: Optional[Path] = ProcessorOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    base: Optional[Path] = BaseOpt,
    muon: Optional[bool] = MuonOpt,
    precision: Optional[str] = PrecisionOpt,
    chunk_size: Optional[int] = ChunkOpt,
    window: Optional[int] = WindowOpt,
    ttt: Optional[list[str]] = TTTOpt,
    save: Optional[Path] = typer.Option(None, "--save", help="Save the stream's memory here at the end (checked first)."),
) -> None:
    """Feed a long video into the model's test-time-training memory and ask questions at given times.

    The video is read lazily (memory stays bounded) at --fps; each answer comes from a snapshot of the memory,
    so asking does not change what the stream remembers. Answers go to stdout, one line per question."""
    from .pipeline import PromptTooLongError
    from .video import VideoError

    if not (0 < fps < math.inf):
        fail(f"--fps must be positive (and finite), got {fps}")
    if chunk_frames % 2:
        fail(f"--chunk-frames must be even (frames go in pairs), got {chunk_frames}")
    at, questions = at or [], questions or []
    if not at:
        fail('give at least one question: --at TIME "QUESTION" (e.g. --at 12.5 "How many chairs are there?")')
    if len(at) != len(questions):
        fail(f'each --at TIME needs one QUESTION right after it: got {len(at)} times and {len(questions)} '
             f'questions ({questions})')
    if questions.count("-") > 1:
        fail("only one question can be read from stdin (-)")
    queries = sorted(((_seconds(t), _prompt(q, options, raw), q) for t, q in zip(at, questions)), key=lambda x: x[0])
    hw = _size(size)
    _check_video(video)
    if save is not None:
        _check_writable(save)
    try:
        from .pipeline import video_duration

        duration = video_duration(video)
    except VideoError as err:
        fail(str(err))
    overrides = _one_off(_ttt_overrides(muon, precision, chunk_size, window, ttt))
    pipe = _load_pipeline(model, processor, device, dtype, base, overrides, size=hw, stream_fps=fps, chunk_frames=chunk_frames)
    try:
        session = pipe.open_stream()
    except ImportError as err:
        fail(f"streaming is not available in this installation ({err})")
    if queries[-1][0] > duration:
        console.print(f"[yellow]note:[/] {escape(str(video))} is {duration:.1f} s long; questions after that see the whole video")
    fed = 0.0
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"streaming {escape(video.name)}", total=min(queries[-1][0], duration))
        for t, prompt, question in queries:
            if t > fed and fed < duration:
                try:
                    session.observe_video(video, fed, t, on_chunk=lambda s: progress.update(task, completed=min(s, duration)))
                except VideoError as err:
                    fail(str(err))
                fed = t
                progress.update(task, completed=min(t, duration))
            ask_start = time.perf_counter()
            try:
                text = session.ask(prompt, max_new_tokens=max_new_tokens)
            except PromptTooLongError as err:
                fail(str(err))
            console.print(f"[{t:.1f} s] {session.num_frames} frames in memory; answered in "
                          f"{time.perf_counter() - ask_start:.2f}s: {escape(_one_line(question))}")
            typer.echo(f"{t:g}\t{_one_line(text)}")  # plain: rich would expand the tab
    if save is not None:
        try:
            session.session.save(save)
        except OSError as err:
            fail(f"cannot save the stream memory to {save}: {err}")
        console.print(f"saved the stream memory to {escape(str(save))}")
    console.print(f"streamed {min(fed, duration):.1f} s ({session.num_frames} frames) and answered {len(queries)} "
                  f"questions in {time.perf_counter() - start:.2f}s")
    session.close()


def _one_line(text: str) -> str:
    """An answer on one TIME<tab>answer line: backslash, newline, carriage return and tab escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _check_writable(path: Path) -> None:
    """Fail now, not after the work, when `path` cannot be written."""
    if path.is_dir():
        fail(f"--save {path} is a folder; give a file name, e.g. {path / 'stream.safetensors'}")
    folder = path.parent
    if not folder.is_dir():
        fail(f"--save {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        fail(f"--save {path}: folder {folder} is not writable")


# ------------------------------------------------------------------------------------------------------------------
# eval / data


def _eval_loader(path: str, device: str = "cpu"):
    """The model the `eval` command evaluates: a pipeline on a model folder (evaluation video settings)."""
    from .checkpoint import CheckpointError
    from .eval.errors import EvalError
    from .pipeline import SpatialTTTPipeline

    try:
        pipe = SpatialTTTPipeline.from_pretrained(path, device=device)
    except (CheckpointError, FileNotFoundError) as err:
        raise EvalError(str(err)) from None
    _say_settings(pipe.model)
    return pipe


def _register_subcommands() -> None:
    from .data.cli import register as register_data
    from .eval.cli import register as register_eval
    from .serve.cli import register as register_serve
    from .train.cli import register as register_train

    register_eval(app, _eval_loader)
    register_data(app)
    register_train(app)
    register_serve(app)


_register_subcommands()


def main() -> None:
    app()
