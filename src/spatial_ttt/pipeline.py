"""Video in, answer out: a model folder (checkpoint + processor files) behind one Python object.

    from spatial_ttt.pipeline import SpatialTTTPipeline

    pipe = SpatialTTTPipeline.from_pretrained("path/to/Spatial-TTT")       # local folder only
    pipe.ask("scene.mp4", "How many chairs are in the room?")              # builds the VSI-Bench prompt
    pipe.answer("scene.mp4", "These are frames of a video.\\n...", max_new_tokens=16)   # prompt as given

A *model folder* holds a Spatial-TTT checkpoint (config.json + safetensors, reference format or ours) and the
Qwen3-VL processor files (tokenizer, chat template, preprocessor configs); the processor may also live in its
own folder (``processor=``). The pipeline implements the evaluation's ``VideoQAModel`` (``answer``) and
``StreamingQAModel`` (``open_stream``) protocols (spatial_ttt.eval.interfaces).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import CheckpointError, load_model, save_model
from .eval.prompts import PRE_PROMPT, multiple_choice_prompt, numerical_prompt
from .models.modeling import SpatialTTTForConditionalGeneration
from .quiet import quiet_transformers
from .video import DEFAULT_SIZE, SpatialTTTProcessor, VideoClip, VideoError, read_video
from .video.frames import IMAGE_FOLDER_RATE, list_images, load_image, resize_frames
from .video.patches import pixel_target

if TYPE_CHECKING:
    from .streaming import StreamSession

# The released evaluation's video setting (spec/evaluation.md): qwen-vl-utils sampling at 16 fps, at most
# 128 frames, every frame resized to 352x480.
EVAL_FPS = 16.0
EVAL_MAX_FRAMES = 128
# Streams are sampled at 1 frame per second, as the authors' VSI-SUPER streaming wrapper does.
STREAM_FPS = 1.0
DEFAULT_CHUNK_FRAMES = 16

VideoInput = str | Path | VideoClip | Sequence[str | Path]


class PromptTooLongError(ValueError):
    """A prompt (video + text) longer than the model's position range (max_position_embeddings)."""


class ModelFolderError(CheckpointError):
    """A model folder whose checkpoint and processor cannot be used together (the message says why)."""


def build_prompt(question: str, options: Sequence[str] | None = None, *, pre_prompt: str | None = PRE_PROMPT) -> str:
    """The evaluation's prompt text (spec/evaluation.md): with options the multiple-choice layout, otherwise
    the short-answer (numerical) layout. Options are used as given, e.g. "A. chair"."""
    if options:
        return multiple_choice_prompt(question, list(options), pre_prompt=pre_prompt)
    if pre_prompt is None:
        raise ValueError("pre_prompt=None is only defined for multiple-choice prompts")
    return numerical_prompt(question, pre_prompt=pre_prompt)


@dataclass
class Answer:
    """One answer with what produced it: the text, token counts, frames seen and per-step seconds."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    num_frames: int
    timings: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# reading videos


def read_images(paths: Sequence[str | Path], size: tuple[int, int] | None = DEFAULT_SIZE) -> VideoClip:
    """A list of images (multi-view, e.g. MindCube) as a clip: each image becomes its own temporal group of two
    equal frames (how Qwen3-VL patchifies a still image), at 1 s per view, so no two views share a patch."""
    if not paths:
        raise VideoError("empty list of images")
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise VideoError(f"image file not found: {path}")
        image = load_image(path)
        frames.append(resize_frames(image[None], size)[0] if size else image)
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"images have different sizes {sorted(shapes)}; give size=(H, W)")
    doubled = torch.stack([f for f in frames for _ in range(2)])
    times = tuple(float(i) for i in range(len(frames)) for _ in range(2))
    return VideoClip(doubled, times, source=f"{len(frames)} images ({Path(paths[0]).name}, ...)")


def iter_video_frames(
    path: str | Path,
    *,
    fps: float = STREAM_FPS,
    start_s: float | None = None,
    end_s: float | None = None,
    size: tuple[int, int] | None = DEFAULT_SIZE,
) -> Iterator[tuple[torch.Tensor, float]]:
    """Frames of [start_s, end_s) of a video file or an image folder (1 image per second), sampled at `fps` (the
    first frame at or after each k / fps seconds, so consecutive segments sample like the whole file; every frame
    when the video is slower), resized to `size`, as (uint8 [H, W, 3], seconds) pairs. Decodes lazily: memory
    holds one frame. Errors raise VideoError naming the file."""
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not path.exists():
        raise VideoError(f"video file not found: {path}")
    start = max(0.0, start_s or 0.0)
    next_t = math.ceil(start * fps - 1e-6) / fps  # sample on the file's grid k / fps, whatever the segment start
    timed = _timed_images(path) if path.is_dir() else _timed_video_frames(path, start)
    for frame, t in timed:
        if t < start - 1e-6:
            continue
        if end_s is not None and t >= end_s - 1e-6:
            break
        if t + 1e-6 < next_t:
            continue
        while next_t <= t + 1e-6:
            next_t += 1.0 / fps
        rgb = frame()
        yield (resize_frames(rgb[None], size)[0] if size else rgb), t


def _timed_images(folder: Path) -> Iterator[tuple[Callable[[], torch.Tensor], float]]:
    """(loader, seconds) of an image folder's images in natural order, read as 1 frame per second."""
    for index, image in enumerate(list_images(folder)):
        yield (lambda image=image: load_image(image)), index / IMAGE_FOLDER_RATE


def _timed_video_frames(path: Path, start: float) -> Iterator[tuple[Callable[[], torch.Tensor], float]]:
    """(loader, seconds) of a video file's frames from about `start` on (seeks there)."""
    import av

    from .video.decode import _open, upright_rgb

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        try:
            if start > 0:
                container.seek(int((start + base) / stream.time_base), stream=stream, backward=True)
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is not None:
                    t = float(frame.pts * stream.time_base) - base
                elif rate:
                    t = index / rate
                else:
                    raise VideoError(f"cannot time the frames of {path}")
                yield (lambda frame=frame: upright_rgb(frame, str(path))), t
        except av.FFmpegError as err:
            raise VideoError(f"corrupt video {path}: {err}") from err


def video_duration(path: str | Path) -> float:
    """Seconds of a video file (frame count / frame rate, as read_video counts them) or an image folder."""
    from .video.decode import probe

    path = Path(path)
    if path.is_dir():
        return len(list_images(path)) / IMAGE_FOLDER_RATE
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    total, rate = probe(path)
    return total / rate


def chunk_frames(
    frames: Iterator[tuple[torch.Tensor, float]], chunk: int = DEFAULT_CHUNK_FRAMES
) -> Iterator[tuple[torch.Tensor, tuple[float, ...]]]:
    """Groups (frame, seconds) pairs into [chunk, H, W, 3] batches; the final batch may be shorter, and odd (a
    StreamSession carries an odd frame over to the next batch instead of padding it into the memory)."""
    if chunk < 2 or chunk % 2:
        raise ValueError(f"chunk must be a positive even number of frames, got {chunk}")
    buf: list[torch.Tensor] = []
    times: list[float] = []
    for frame, t in frames:
        buf.append(frame)
        times.append(t)
        if len(buf) == chunk:
            yield torch.stack(buf), tuple(times)
            buf, times = [], []
    if buf:
        yield torch.stack(buf), tuple(times)


# ----------------------------------------------------------------------------------------------------------------
# the pipeline


def _stop_ids(processor: SpatialTTTProcessor, folder: Path | None) -> list[int]:
    """The processor's stop tokens and the eos ids of a generation_config.json in the model folder."""
    ids = set(processor.stop_token_ids)
    if folder is not None and (folder / "generation_config.json").is_file():
        try:
            eos = json.loads((folder / "generation_config.json").read_text()).get("eos_token_id")
        except json.JSONDecodeError:
            eos = None
        ids.update([eos] if isinstance(eos, int) else [i for i in eos or [] if isinstance(i, int)])
    return sorted(ids)


def check_compatible(model: SpatialTTTForConditionalGeneration, processor: SpatialTTTProcessor, where: str) -> None:
    """Refuses a processor whose special-token ids, vocabulary size or patch geometry differ from the model's."""
    cfg = model.config
    problems = []
    for name in ("video_token_id", "image_token_id", "vision_start_token_id", "vision_end_token_id"):
        ours, theirs = getattr(cfg, name), getattr(processor, name)
        if ours != theirs:
            problems.append(f"{name}: model {ours}, processor {theirs}")
    vocab = cfg.text_config.vocab_size
    if len(processor.tokenizer) > vocab:
        problems.append(f"tokenizer has {len(processor.tokenizer)} tokens, model vocabulary {vocab}")
    vp, vc = processor.video_processor, cfg.vision_config
    for name, theirs, ours in (
        ("patch_size", vp.patch_size, vc.patch_size),
        ("temporal_patch_size", vp.temporal_patch_size, vc.temporal_patch_size),
        ("merge_size", vp.merge_size, vc.spatial_merge_size),
    ):
        if ours != theirs:
            problems.append(f"{name}: model {ours}, processor {theirs}")
    if problems:
        raise ModelFolderError(f"{where}: the processor does not fit the checkpoint ({'; '.join(problems)})")


class SpatialTTTPipeline:
    """Model + processor + video settings: answers questions about videos, one-shot or streamed.

    Video settings (used for files and image folders): ``fps`` / ``num_frames`` / ``max_frames`` pick frames
    with qwen-vl-utils' rule (defaults: the released evaluation, 16 fps capped at 128 frames), ``size`` (H, W)
    resizes them (352x480). Decoding is greedy unless ``do_sample`` is given.
    """

    def __init__(
        self,
        model: SpatialTTTForConditionalGeneration,
        processor: SpatialTTTProcessor,
        *,
        fps: float | None = EVAL_FPS,
        num_frames: int | None = None,
        max_frames: int | None = EVAL_MAX_FRAMES,
        size: tuple[int, int] | None = DEFAULT_SIZE,
        stream_fps: float = STREAM_FPS,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        stop_token_ids: Sequence[int] | None = None,
        source: str = "<model>",
    ) -> None:
        check_compatible(model, processor, source)
        self.model = model
        self.processor = processor
        self.fps, self.num_frames, self.max_frames, self.size = fps, num_frames, max_frames, size
        self.stream_fps, self.chunk_frames = stream_fps, chunk_frames
        self.stop_token_ids = list(stop_token_ids) if stop_token_ids is not None else _stop_ids(processor, None)
        self.source = source

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        processor: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        base: str | Path | None = None,
        ttt: dict[str, Any] | None = None,
        **settings: Any,
    ) -> SpatialTTTPipeline:
        """Load a model folder (checkpoint + processor files; or the processor from ``processor``), strictly.

        Every checkpoint layout loads (spatial_ttt.load_model); ``base`` lays the checkpoint ``folder`` (a file or
        folder) over a plain Qwen3-VL folder, whose processor files are then used; ``ttt`` overrides TTT settings
        (e.g. ``{"use_muon": True}``). Raises CheckpointError (missing folder, not a checkpoint, mis-matched
        tensors), ModelFolderError (the processor does not fit the checkpoint) or FileNotFoundError (processor
        files missing), naming the folder.
        """
        folder = Path(folder)
        if not folder.is_dir() and base is None:
            raise CheckpointError(f"model folder not found: {folder}")
        model = load_model(folder, base=base, dtype=dtype, device=device, **(ttt or {}))
        proc_dir = Path(processor) if processor is not None else Path(base) if base is not None else folder
        try:
            proc = SpatialTTTProcessor.from_pretrained(proc_dir)
        except FileNotFoundError as err:
            hint = "" if processor is not None else " (put the processor files beside the checkpoint or pass a processor folder)"
            raise ModelFolderError(f"{err}{hint}") from None
        settings.setdefault("stop_token_ids", _stop_ids(proc, folder if folder.is_dir() else Path(base)))
        return cls(model, proc, source=str(folder), **settings)

    # ------------------------------------------------------------------------------------------------------------
    # one-shot

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def read(self, video: VideoInput) -> VideoClip:
        """A VideoClip from a video file, an image folder (1 frame per second), a list of image files or a clip."""
        if isinstance(video, VideoClip):
            return video
        if isinstance(video, (str, Path)):
            fps = None if self.num_frames is not None else self.fps
            return read_video(video, num_frames=self.num_frames, fps=fps, max_frames=self.max_frames, size=self.size)
        if isinstance(video, Sequence):
            return read_images(list(video), size=self.size)
        raise TypeError(f"video must be a path, a list of image paths or a VideoClip, got {type(video).__name__}")

    def inputs(self, clip: VideoClip, prompt: str) -> dict[str, torch.Tensor]:
        """Model inputs for one chat turn: the clip, then the prompt text. On the model's device, except the pixels:
        they stay in host memory (1024 frames of 352x480 are 1.9 GiB of fp32 pixels), written in the vision tower's
        dtype and, on CUDA, pinned (:func:`pixel_target`), and the model moves one piece of the video at a time to
        the device as its vision tower reaches it."""
        pixels = pixel_target(self.model.model.visual.dtype, self.device)
        inputs = self.processor(clip, prompt, **pixels)
        return {k: v if k == "pixel_values_videos" else v.to(self.device) for k, v in inputs.items()}

    def generate(self, inputs: dict[str, torch.Tensor], *, max_new_tokens: int = 16, **sampling: Any) -> list[int]:
        """New token ids (stop token excluded) for prepared inputs; greedy unless do_sample=True is given.
        Raises PromptTooLongError when prompt + new tokens exceed the model's max_position_embeddings."""
        prompt = inputs["input_ids"].shape[1]
        limit = self.model.config.text_config.max_position_embeddings
        if prompt + max_new_tokens > limit:
            raise PromptTooLongError(
                f"the prompt is {prompt} tokens (video and text) + up to {max_new_tokens} new ones, more than the "
                f"model's max_position_embeddings {limit}: use a shorter question or fewer frames"
            )
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, stop_token_ids=self.stop_token_ids, **sampling)
        return self._until_stop(out[0, prompt:].tolist())

    def _until_stop(self, tokens: list[int]) -> list[int]:
        for i, token in enumerate(tokens):
            if token in self.stop_token_ids:
                return tokens[:i]
        return tokens

    def decode(self, tokens: Sequence[int]) -> str:
        return self.processor.decode(list(tokens)).strip()

    def run(self, video: VideoInput, prompt: str, *, max_new_tokens: int = 16, **sampling: Any) -> Answer:
        """Read, preprocess, generate and decode, timing each step."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        clip = self.read(video)
        timings["read video"] = time.perf_counter() - start
        start = time.perf_counter()
        inputs = self.inputs(clip, prompt)
        timings["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        tokens = self.generate(inputs, max_new_tokens=max_new_tokens, **sampling)
        timings["generate"] = time.perf_counter() - start
        return Answer(self.decode(tokens), tokens, int(inputs["input_ids"].shape[1]), clip.num_frames, timings)

    def answer(self, video: VideoInput, prompt: str, *, max_new_tokens: int = 16, **sampling: Any) -> str:
        """The answer to `prompt` (used as given) about a video: the evaluation's VideoQAModel.answer."""
        return self.run(video, prompt, max_new_tokens=max_new_tokens, **sampling).text

    def ask(
        self,
        video: VideoInput,
        question: str,
        options: Sequence[str] | None = None,
        *,
        max_new_tokens: int = 16,
        **sampling: Any,
    ) -> str:
        """Answer a question with the evaluation's prompt (build_prompt: pre-prompt, options, post-prompt)."""
        return self.answer(video, build_prompt(question, options), max_new_tokens=max_new_tokens, **sampling)

    __call__ = ask

    # ------------------------------------------------------------------------------------------------------------
    # streaming

    def stream(self) -> StreamSession:
        """A fresh streaming session on this model (spatial_ttt.streaming.StreamSession)."""
        from .streaming import StreamSession

        return StreamSession(self.model, self.processor, batch_size=1)

    def open_stream(self) -> VideoStream:
        """The evaluation's StreamingQAModel.open_stream: a stream fed from video files, queried from snapshots."""
        return VideoStream(self)


class VideoStream:
    """A StreamSession fed from video files (the evaluation's StreamSession protocol).

    ``observe_video(path, start_s, end_s)`` samples [start_s, end_s) at the pipeline's ``stream_fps`` and feeds
    it in batches of ``chunk_frames``; ``ask`` answers from a snapshot (memory unchanged); ``close`` drops it.
    """

    def __init__(self, pipeline: SpatialTTTPipeline, session: StreamSession | None = None) -> None:
        self.pipeline = pipeline
        self.session = session if session is not None else pipeline.stream()
        self.offset = 0.0  # seconds of video fed before the current file (timestamps keep increasing)
        self._last_t: float | None = None
        self._file: tuple[str, float] | None = None  # (path, offset) of the file being fed

    @property
    def num_frames(self) -> int:
        return self.session.num_frames

    def observe_frames(self, frames: torch.Tensor, timestamps: Sequence[float]) -> None:
        self.session.observe(frames, tuple(float(t) for t in timestamps))
        self._last_t = float(timestamps[-1])

    def observe_video(
        self,
        path: str | Path,
        start_s: float | None = None,
        end_s: float | None = None,
        *,
        on_chunk: Callable[[float], None] | None = None,
    ) -> None:
        """Feed [start_s, end_s) of a video file. A new file continues the stream's clock after the previous one;
        ``on_chunk(seconds reached in this file)`` is called after each batch (for progress bars)."""
        key = str(Path(path).resolve())
        if self._file is None or self._file[0] != key:
            offset = 0.0 if self._last_t is None else self._last_t + 1.0 / self.pipeline.stream_fps
            self._file = (key, offset)
        offset = self._file[1]
        frames = iter_video_frames(
            path, fps=self.pipeline.stream_fps, start_s=start_s, end_s=end_s, size=self.pipeline.size
        )
        for batch, times in chunk_frames(frames, self.pipeline.chunk_frames):
            self.observe_frames(batch, [offset + t for t in times])
            if on_chunk is not None:
                on_chunk(times[-1])

    def ask(self, prompt: str, *, max_new_tokens: int = 16, **sampling: Any) -> str:
        """Answer `prompt` (used as given) from a snapshot of the memory; the stream is left unchanged.
        Raises PromptTooLongError when the stream so far + question + new tokens exceed max_position_embeddings."""
        limit = self.pipeline.model.config.text_config.max_position_embeddings
        used = int(self.session.stream.model.next_position.max())  # rope positions taken by what was fed so far
        question = int(self.pipeline.processor.suffix(prompt).input_ids.shape[1])
        if used + question + max_new_tokens > limit:
            raise PromptTooLongError(
                f"the stream so far takes {used} positions, the question {question} and the answer up to "
                f"{max_new_tokens}: more than the model's max_position_embeddings {limit}"
            )
        sampling.setdefault("do_sample", False)
        sampling.setdefault("stop_token_ids", self.pipeline.stop_token_ids)
        return self.session.ask(prompt, max_new_tokens=max_new_tokens, keep=False, **sampling)  # stripped there

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


# ----------------------------------------------------------------------------------------------------------------
# tiny model folder


def make_tiny_model_folder(folder: str | Path, seed: int = 0, **overrides: Any) -> Path:
    """Write a complete model folder: a tiny *untrained* Spatial-TTT checkpoint (spatial_ttt.tiny) and the tiny
    processor (spatial_ttt.video.make_tiny_processor), whose token ids match. For tests and the demo."""
    from .tiny import tiny_model
    from .video import make_tiny_processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        save_model(tiny_model(seed=seed, **overrides), folder)
    make_tiny_processor(folder)
    return folder


def load_pipeline(path: str | Path) -> SpatialTTTPipeline:
    """PATH -> pipeline with the evaluation's defaults: the loader for the lmms-eval plug-in
    (``loader=spatial_ttt.pipeline:load_pipeline``) and for ``spatial-ttt eval``."""
    return SpatialTTTPipeline.from_pretrained(path)
