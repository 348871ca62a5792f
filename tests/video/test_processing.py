import json

import pytest
import torch
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from spatial_ttt.video import TINY_SPECIAL_IDS, SpatialTTTProcessor, VideoClip
from spatial_ttt.video.patches import TorchVideoProcessor
from spatial_ttt.video.tiny import build_tiny_tokenizer

QUESTION = "How many chairs are in the room?"


def make_clip(t: int, h: int = 64, w: int = 96, seed: int = 0) -> VideoClip:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g)
    return VideoClip(frames, tuple(0.5 * i for i in range(t)))


def test_tiny_special_ids(processor):
    assert TINY_SPECIAL_IDS == {
        "<|image_pad|>": 500,
        "<|video_pad|>": 501,
        "<|vision_start|>": 502,
        "<|vision_end|>": 503,
        "<|endoftext|>": 504,
        "<|im_start|>": 505,
        "<|im_end|>": 506,
    }
    assert len(processor.tokenizer) == 507
    assert (processor.image_token_id, processor.video_token_id) == (500, 501)
    assert (processor.vision_start_token_id, processor.vision_end_token_id) == (502, 503)
    assert (processor.eos_token_id, processor.pad_token_id) == (506, 504)


def test_tiny_tokenizer_is_deterministic():
    assert build_tiny_tokenizer().to_str() == build_tiny_tokenizer().to_str()


@pytest.mark.parametrize("text", [QUESTION, "3.25", "42 meters", "B. table", "Ünïcode 中文 ok"])
def test_text_round_trip(processor, text):
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < 500 and processor.decode(ids) == text


def test_question_is_compact(processor):
    assert len(processor.tokenizer(QUESTION)["input_ids"]) <= 12  # real merges, not byte soup
    assert len(processor.tokenizer("2025")["input_ids"]) == 4  # digits one by one, as Qwen does


def test_decode_skips_special_tokens(processor):
    ids = processor.tokenizer("<|im_start|>assistant\n3<|im_end|>")["input_ids"]
    assert processor.decode(torch.tensor([ids])) == "assistant\n3"
    assert processor.decode(ids, skip_special_tokens=False) == "<|im_start|>assistant\n3<|im_end|>"


def test_missing_folder_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json") as e:
        SpatialTTTProcessor.from_pretrained(tmp_path)
    assert str(tmp_path) in str(e.value) and "tokenizer_config.json" in str(e.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        SpatialTTTProcessor.from_pretrained(tmp_path / "nope")


def test_one_shot_layout(processor):
    clip = make_clip(4, 352, 480)
    out = processor(clip, QUESTION)
    assert out["video_grid_thw"].tolist() == [[2, 22, 30]]
    assert out["pixel_values_videos"].shape == (2 * 22 * 30, 3 * 2 * 16 * 16)
    ids = out["input_ids"][0]
    video = ids == processor.video_token_id
    assert int(video.sum()) == 2 * 165 and processor.tokens_per_group(352, 480) == 165
    assert torch.equal(out["mm_token_type_ids"][0], video.long() * 2)
    assert out["attention_mask"].sum() == ids.numel()
    text = processor.decode(ids, skip_special_tokens=False)
    # group times: mean of each pair of frame times (0, 0.5) and (1.0, 1.5), printed with 1 decimal
    block = "<|vision_start|>" + "<|video_pad|>" * 165 + "<|vision_end|>"
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<0.2 seconds>{block}<1.2 seconds>{block}{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text == expected


def test_real_timestamps_reach_the_prompt(processor):
    clip = VideoClip(make_clip(4).frames, (10.0, 10.4, 61.0, 61.2))
    text = processor.decode(processor(clip, "q")["input_ids"], skip_special_tokens=False)
    assert "<10.2 seconds>" in text and "<61.1 seconds>" in text


@pytest.mark.parametrize("split", [[2, 2, 2, 2], [4, 4], [2, 6], [6, 2], [8]])
def test_streaming_pieces_equal_one_shot(processor, split):
    clip = make_clip(8, seed=1)
    one = processor(clip, QUESTION)
    pieces, start = [processor.prefix()], 0
    for n in split:
        pieces.append(processor.encode_frames(clip.frames[start : start + n], clip.timestamps[start : start + n]))
        start += n
    pieces.append(processor.suffix(QUESTION))
    assert torch.equal(torch.cat([p.input_ids for p in pieces], dim=1), one["input_ids"])
    assert torch.equal(torch.cat([p.mm_token_type_ids for p in pieces], dim=1), one["mm_token_type_ids"])
    video = [p for p in pieces if p.pixel_values_videos is not None]
    assert torch.equal(torch.cat([p.pixel_values_videos for p in video]), one["pixel_values_videos"])
    grids = torch.cat([p.video_grid_thw for p in video])
    assert grids[:, 0].sum() == one["video_grid_thw"][0, 0] and (grids[:, 1:] == one["video_grid_thw"][:, 1:]).all()
    assert sum(len(p) for p in pieces) == one["input_ids"].shape[1]


def test_prefix_and_suffix_text(processor):
    assert processor.decode(processor.prefix().input_ids, skip_special_tokens=False).endswith("<|im_start|>user\n")
    suffix = processor.decode(processor.suffix("Why?").input_ids, skip_special_tokens=False)
    assert suffix == "Why?<|im_end|>\n<|im_start|>assistant\n"


def test_frame_pair_piece(processor):
    piece = processor.encode_frames(make_clip(2, 352, 480).frames, (0.0, 0.5))
    ids = piece.input_ids[0].tolist()
    # "<0.2 seconds>" + vision_start + 165 video tokens + vision_end; no outer wrapper (as the reference)
    assert ids[-167] == 502 and ids[-1] == 503 and ids[-166:-1] == [501] * 165
    assert processor.decode(ids[:-167]) == "<0.2 seconds>"
    assert piece.video_grid_thw.tolist() == [[1, 22, 30]]


def test_odd_piece_rejected(processor):
    with pytest.raises(ValueError, match="even"):
        processor.encode_frames(make_clip(3).frames, (0.0, 1.0, 2.0))


def test_patchify_matches_image_processor(processor_dir):
    # Qwen3-VL treats an image as a video of 2 identical frames: both paths must agree
    vp = TorchVideoProcessor.from_folder(processor_dir)
    frame = make_clip(1, 64, 96).frames[0]
    cfg = json.loads((processor_dir / "preprocessor_config.json").read_text())
    ip = Qwen2VLImageProcessorPil(**{k: cfg[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")})
    ref = ip(images=[frame.numpy()], do_resize=False, return_tensors="pt")
    got, grid = vp.patchify(frame[None].repeat(2, 1, 1, 1))
    assert grid == ref["image_grid_thw"][0].tolist() == [1, 4, 6]
    torch.testing.assert_close(got, ref["pixel_values"], atol=1e-6, rtol=0)


def test_patchify_layout_by_hand():
    vp = TorchVideoProcessor()
    frames = torch.zeros(2, 64, 64, 3, dtype=torch.uint8)
    frames[1, 16:32, 32:48, 0] = 255  # second frame, patch row 1, patch col 2, red channel
    x, grid = vp.patchify(frames)
    assert grid == [1, 4, 4]
    # merge-block order: block (0, 1) holds patches (0,2), (0,3), (1,2), (1,3) -> rows 4..7; (1,2) is row 6
    row = int((x.max(dim=1).values > 0).nonzero().item())
    assert row == 6
    # features: channel, then time, then 16x16 pixels -> red, frame 1 = columns 256..511
    hot = (x[row] > 0).nonzero().flatten()
    assert hot.min() == 256 and hot.max() == 511 and x[row, 256] == 1.0 and x[0, 0] == -1.0


def test_odd_frame_count_is_padded():
    vp = TorchVideoProcessor()
    frames = make_clip(3, 32, 32).frames
    x, grid = vp.patchify(frames)
    y, _ = vp.patchify(torch.cat([frames, frames[-1:]]))
    assert grid == [2, 2, 2] and torch.equal(x, y)


def plain_patchify(vp: TorchVideoProcessor, frames: torch.Tensor) -> torch.Tensor:
    """The processor's math written plainly: normalise whole fp32 frames, pad, then reorder (how it was computed
    before it reordered uint8 frames and normalised rows in blocks)."""
    mean = torch.tensor(vp.image_mean) * (1.0 / vp.rescale_factor)
    std = torch.tensor(vp.image_std) * (1.0 / vp.rescale_factor)
    x = (frames.permute(0, 3, 1, 2).float() - mean[:, None, None]) / std[:, None, None]
    if pad := -x.shape[0] % vp.temporal_patch_size:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
    tp, p, m = vp.temporal_patch_size, vp.patch_size, vp.merge_size
    gt, c, gh, gw = x.shape[0] // tp, x.shape[1], x.shape[2] // p, x.shape[3] // p
    x = x.view(gt, tp, c, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tp * p * p)


def test_patchify_gives_the_plain_math_bit_for_bit_in_fp32_and_bf16():
    """13 frames of 256x320: a padded last group and 2240 rows, so more than one block of rows is normalised.
    Non-default mean/std, so that a wrong channel per feature column shows."""
    vp = TorchVideoProcessor(image_mean=(0.48, 0.46, 0.41), image_std=(0.27, 0.26, 0.28))
    frames = make_clip(13, 256, 320, seed=3).frames
    expected = plain_patchify(vp, frames)
    got, grid = vp.patchify(frames)
    assert grid == [7, 16, 20] and got.shape == (2240, 1536) and got.dtype == torch.float32
    assert torch.equal(got, expected)
    half, _ = vp.patchify(frames, pixel_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.to(torch.bfloat16))


def test_patchify_takes_a_view_of_frames_as_they_are():
    """Every other frame of a clip, cropped: a non-contiguous view gives the pixels of its contiguous copy."""
    vp = TorchVideoProcessor()
    frames = make_clip(8, 64, 96, seed=4).frames[::2, :, 32:]
    assert not frames.is_contiguous()
    assert torch.equal(vp.patchify(frames)[0], plain_patchify(vp, frames.contiguous()))


def test_patchify_refuses_frames_that_are_not_uint8():
    with pytest.raises(ValueError, match="expected uint8 frames"):
        TorchVideoProcessor().patchify(make_clip(2, 32, 32).frames.float() / 255)


def test_the_processor_writes_pixels_in_the_dtype_asked_with_the_same_tokens(processor):
    clip = make_clip(4)
    full = processor(clip, QUESTION)
    half = processor(clip, QUESTION, pixel_dtype=torch.bfloat16)
    assert half["pixel_values_videos"].dtype == torch.bfloat16
    assert torch.equal(half["pixel_values_videos"], full["pixel_values_videos"].to(torch.bfloat16))
    assert all(torch.equal(half[k], full[k]) for k in ("input_ids", "mm_token_type_ids", "video_grid_thw"))
    piece = processor.encode_frames(clip.frames, clip.timestamps, pixel_dtype=torch.bfloat16)
    assert torch.equal(piece.pixel_values_videos, half["pixel_values_videos"])
