"""Qwen3-VL prompts for Spatial-TTT: one-shot inputs and the streaming pieces that add up to them.

Built on transformers' own Qwen3VLProcessor (tokenizer + chat template + placeholder expansion),
with TorchVideoProcessor in place of the torchvision-only Qwen3VLVideoProcessor. Layout of the
video in the prompt, one block per temporal group of 2 frames:

    <{t:.1f} seconds><|vision_start|><|video_pad|> x (H/32 * W/32)<|vision_end|>

with t the mean timestamp of the group's two frames. As in transformers 4.57 (which the released
checkpoints and the golden fixtures used), the chat template's outer
<|vision_start|><|video_pad|><|vision_end|> is replaced as a whole; transformers 5.x would keep an
extra outer vision_start/vision_end pair around the blocks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3VLProcessor
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import VideoMetadata

from ..quiet import quiet_transformers
from .clip import VideoClip
from .patches import CONFIG_FILES, TorchVideoProcessor

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
_QUESTION_MARK = "\x00QUESTION\x00"  # stand-in for the question while splitting the rendered template
_ANSWER_MARK = "\x00ANSWER\x00"  # stand-in for an answer, likewise


@dataclass(frozen=True)
class PromptPiece:
    """A contiguous slice of a prompt: tokens (and, for video pieces, their pixels).

    input_ids, mm_token_type_ids: int64 [1, L]. pixel_values_videos: float32 [N, 3*2*16*16] and
    video_grid_thw: int64 [1, 3] for video pieces, None for text pieces.
    """

    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[1])


def _missing_files(folder: Path) -> list[str]:
    missing = []
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        missing.append("tokenizer.json")
    if not (folder / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    if not (folder / "preprocessor_config.json").is_file():
        missing.append("preprocessor_config.json")
    if not any((folder / n).is_file() for n in CONFIG_FILES):
        missing.append("video_preprocessor_config.json")
    if _read_chat_template(folder) is None:
        missing.append("chat_template.jinja (or chat_template.json, or chat_template in tokenizer_config.json)")
    return missing


def _read_chat_template(folder: Path) -> str | None:
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    for name in ("chat_template.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            template = json.loads((folder / name).read_text()).get("chat_template")
            if isinstance(template, str):
                return template
    return None


def _metadata(timestamps: Sequence[float]) -> VideoMetadata:
    # Qwen3VLProcessor prints time = frames_indices / fps per frame (then averages each pair), so
    # timestamps given as "indices" at fps 1 come out exactly, whatever their spacing.
    return VideoMetadata(total_num_frames=len(timestamps), fps=1.0, frames_indices=[float(t) for t in timestamps])


class _Qwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3VLProcessor that accepts TorchVideoProcessor.

    transformers checks a video processor's class through its video-processor registry, which is a
    placeholder when torchvision is missing; the check is done here directly instead.
    """

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name != "video_processor":
            return super().check_argument_for_proper_class(argument_name, argument)
        if not isinstance(argument, VideoProcessorMixin):
            raise TypeError(f"video_processor must be a VideoProcessorMixin, got {type(argument).__name__}")
        return VideoProcessorMixin


class SpatialTTTProcessor:
    """Tokenizer + video patchifier + chat layout for Spatial-TTT (Qwen3-VL inputs)."""

    def __init__(self, processor: Qwen3VLProcessor, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> None:
        self.processor = processor
        self.system_prompt = system_prompt
        # Render once with a stand-in question and cut at the template's video item: the text before it
        # is the prefix, the text after it (with the question put in) is the suffix.
        block = processor.vision_start_token + processor.video_token + processor.vision_end_token
        chat = processor.apply_chat_template(self._messages(_QUESTION_MARK), tokenize=False, add_generation_prompt=True)
        if chat.count(block) != 1 or chat.count(_QUESTION_MARK) != 1:
            raise ValueError("chat template does not render one video placeholder followed by the question")
        self._prefix_text, self._suffix_template = chat.split(block)
        # A second turn after an answer: what the template puts between the answer and the next user content.
        follow_up = [{"role": "assistant", "content": [{"type": "text", "text": _ANSWER_MARK}]},
                     {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": _QUESTION_MARK}]}]
        chat = processor.apply_chat_template(self._messages(_QUESTION_MARK) + follow_up, tokenize=False)
        self._turn_end_text = chat.split(_ANSWER_MARK, 1)[1].split(block, 1)[0]

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> SpatialTTTProcessor:
        """Load from a local Qwen3-VL folder (tokenizer, chat template, image/video preprocessor configs)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"processor folder not found: {folder}")
        if missing := _missing_files(folder):
            raise FileNotFoundError(f"processor folder {folder} lacks: {', '.join(missing)}")
        with quiet_transformers():  # it warns about a Spatial-TTT config.json beside the processor files
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder, local_files_only=True)
        processor = _Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=TorchVideoProcessor.from_folder(folder),
            chat_template=_read_chat_template(folder),
        )
        return cls(processor, system_prompt=system_prompt)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def video_processor(self) -> TorchVideoProcessor:
        return self.processor.video_processor

    @property
    def video_token_id(self) -> int:
        return self.processor.video_token_id

    @property
    def image_token_id(self) -> int:
        return self.processor.image_token_id

    @property
    def vision_start_token_id(self) -> int:
        return self.processor.vision_start_token_id

    @property
    def vision_end_token_id(self) -> int:
        return self.processor.vision_end_token_id

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def stop_token_ids(self) -> list[int]:
        """Tokens that end an answer: the tokenizer's eos, and <|im_end|> / <|endoftext|> where the vocabulary has them."""
        ids = {int(self.eos_token_id)} if self.eos_token_id is not None else set()
        vocab = self.tokenizer.get_vocab()
        ids.update(int(vocab[token]) for token in ("<|im_end|>", "<|endoftext|>") if token in vocab)
        return sorted(ids)

    @property
    def pad_token_id(self) -> int | None:
        return self.tokenizer.pad_token_id

    def tokens_per_group(self, height: int, width: int) -> int:
        """Video tokens per temporal group (2 frames) of frames of this size; 165 for 352x480."""
        return self.video_processor.num_tokens(height, width)

    def _messages(self, question: str) -> list[dict]:
        return [
            {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]},
        ]

    def prompt_text(self, question: str) -> str:
        """The rendered chat with a bare <|video_pad|> where the video goes (before expansion)."""
        return self._prefix_text + self.processor.video_token + self._suffix_text(question)

    def _suffix_text(self, question: str) -> str:
        return self._suffix_template.replace(_QUESTION_MARK, question)

    def _run(self, text: str, frames: torch.Tensor | None = None, timestamps: Sequence[float] = (), **pixels) -> dict:
        kwargs = {"videos": [frames], "video_metadata": [_metadata(timestamps)]} if frames is not None else {}
        return self.processor(text=[text], return_tensors="pt", videos_kwargs=pixels, **kwargs)

    def __call__(
        self, video: VideoClip, question: str, *, pixel_dtype: torch.dtype = torch.float32, pin_memory: bool = False
    ) -> dict[str, torch.Tensor]:
        """One-shot model inputs: input_ids, attention_mask, mm_token_type_ids, pixel_values_videos, video_grid_thw.
        The pixels in ``pixel_dtype``, pinned if ``pin_memory`` (:func:`spatial_ttt.video.patches.pixel_target`)."""
        out = self._run(self.prompt_text(question), video.frames, video.timestamps,
                        pixel_dtype=pixel_dtype, pin_memory=pin_memory)
        keys = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw")
        return {k: out[k] for k in keys}

    def _text_piece(self, text: str) -> PromptPiece:
        out = self._run(text)
        return PromptPiece(out["input_ids"], out["mm_token_type_ids"])

    def prefix(self) -> PromptPiece:
        """Tokens before the video: system turn and the start of the user turn."""
        return self._text_piece(self._prefix_text)

    def encode_frames(
        self,
        frames: torch.Tensor,
        timestamps: Sequence[float],
        *,
        pixel_dtype: torch.dtype = torch.float32,
        pin_memory: bool = False,
    ) -> PromptPiece:
        """Tokens and pixels of consecutive frames (uint8 [T, H, W, 3], T even, H and W multiples of 32); the pixels
        as in ``__call__``."""
        if frames.shape[0] == 0 or frames.shape[0] % self.video_processor.temporal_patch_size:
            raise ValueError(f"a streaming piece needs a positive even number of frames, got {frames.shape[0]}")
        if len(timestamps) != frames.shape[0]:
            raise ValueError(f"{frames.shape[0]} frames but {len(timestamps)} timestamps")
        out = self._run(self.processor.video_token, frames, timestamps, pixel_dtype=pixel_dtype, pin_memory=pin_memory)
        return PromptPiece(out["input_ids"], out["mm_token_type_ids"], out["pixel_values_videos"], out["video_grid_thw"])

    def suffix(self, question: str) -> PromptPiece:
        """Tokens after the video: the question, end of the user turn, and the assistant start."""
        return self._text_piece(self._suffix_text(question))

    def turn_end(self) -> PromptPiece:
        """Tokens between an answer and the next user turn's content: the end of the assistant turn and the start
        of a new user turn (a stream that keeps an answer continues after them)."""
        return self._text_piece(self._turn_end_text)

    def decode(self, token_ids: torch.Tensor | Sequence[int], skip_special_tokens: bool = True) -> str:
        if isinstance(token_ids, torch.Tensor):
            token_ids = token_ids.reshape(-1).tolist()
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)
