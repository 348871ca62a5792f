"""A small, fully local Qwen3-VL processor folder for tests and the embedded demo (no downloads).

The tokenizer is a byte-level BPE (so any text round-trips) trained in code on a fixed English
corpus, with Qwen2's pre-tokenizer split (digits one by one) and 500 regular tokens. The Qwen3-VL
special tokens follow at ids 500..506; the vision ids 500-503 match the tiny golden model
(image 500, video 501, vision_start 502, vision_end 503).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

NUM_REGULAR_TOKENS = 500
SPECIAL_TOKENS = (  # in id order, starting at NUM_REGULAR_TOKENS
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
)
TINY_SPECIAL_IDS = {tok: NUM_REGULAR_TOKENS + i for i, tok in enumerate(SPECIAL_TOKENS)}

# Qwen2's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, whitespace.
_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_CORPUS = """\
You are a helpful assistant.
These are frames of a video.
How many chairs are in the room? How many tables are in the room? How many beds are in the room?
Please answer the question using a single word or phrase.
Answer with the option's letter from the given choices directly.
Options:
A. chair
B. table
C. sofa
D. lamp
What is the length of the longest dimension (length, width, or height) of the bed, measured in centimeters?
What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.
Measuring from the closest point of each object, what is the direct distance between the door and the window (in meters)?
If I am standing by the sofa and facing the television, is the refrigerator to my left, right, or back?
Which of these objects is the closest to the stove? Which object appears first in the video?
You are a robot beginning at the door facing the bed. You want to navigate to the sink.
There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final total.
The kitchen has a sink, a stove, a cabinet and a refrigerator. The bedroom has a bed, a pillow and a desk.
The living room has a sofa, a television, a table, a lamp, a plant, a picture and a window.
seconds minutes meters centimeters square left right front back up down near far first second third
user assistant system video image frame scene object count distance size direction route appearance order
0 1 2 3 4 5 6 7 8 9 10 12 15 20 25 30 42 50 64 75 100 128 165 352 480 0.5 1.5 2.0 3.25 10.0
<0.5 seconds> <1.5 seconds> <2.5 seconds> <10.0 seconds>
"""


def build_tiny_tokenizer() -> Tokenizer:
    """The tiny byte-level BPE tokenizer (deterministic: same corpus, same merges, same ids)."""
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=NUM_REGULAR_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if tok.get_vocab_size() != NUM_REGULAR_TOKENS:
        raise RuntimeError(f"tiny corpus gave {tok.get_vocab_size()} tokens, expected {NUM_REGULAR_TOKENS}")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


# The Qwen3-VL chat layout (written for this project): <|im_start|>role\n...<|im_end|>\n per message;
# an image/video item renders as <|vision_start|><|image_pad|/|video_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for item in content -%}"
    "{%- if item.type == 'video' or 'video' in item -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif item.type == 'image' or 'image' in item -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif 'text' in item -%}{{- item.text -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + render(message.content) + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_VISION = {
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],  # Qwen3-VL normalises to [-1, 1]
    "image_std": [0.5, 0.5, 0.5],
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "do_convert_rgb": True,
    "resample": 3,  # bicubic
    "processor_class": "Qwen3VLProcessor",
}
IMAGE_CONFIG = {
    **_VISION,
    "image_processor_type": "Qwen2VLImageProcessor",
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
}
VIDEO_CONFIG = {
    **_VISION,
    "video_processor_type": "Qwen3VLVideoProcessor",
    "size": {"shortest_edge": 4096, "longest_edge": 25165824},
    "fps": 2,
    "min_frames": 4,
    "max_frames": 768,
}


def make_tiny_processor(folder: str | Path) -> None:
    """Write a working Qwen3-VL processor folder (tokenizer, chat template, image/video configs)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tiny_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=262144,
    )
    fast.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    (folder / "preprocessor_config.json").write_text(json.dumps(IMAGE_CONFIG, indent=2))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_CONFIG, indent=2))
