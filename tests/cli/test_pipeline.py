"""The Python facade: SpatialTTTPipeline on a tiny model folder."""

from __future__ import annotations

import pytest
import torch

from spatial_ttt.eval.interfaces import StreamingQAModel, VideoQAModel
from spatial_ttt.eval.prompts import multiple_choice_prompt, numerical_prompt
from spatial_ttt.pipeline import (
    ModelFolderError,
    SpatialTTTPipeline,
    build_prompt,
    chunk_frames,
    iter_video_frames,
    read_images,
)
from spatial_ttt.video import VideoClip, VideoError


@pytest.fixture(scope="module")
def pipe(tiny_folder):
    return SpatialTTTPipeline.from_pretrained(tiny_folder, size=(64, 96), num_frames=8, stream_fps=2.0)


def test_pipeline_implements_the_evaluation_protocols(pipe):
    assert isinstance(pipe, VideoQAModel) and isinstance(pipe, StreamingQAModel)
    assert pipe.stop_token_ids == [504, 506]  # <|endoftext|>, <|im_end|> (eos)


def test_prompts_are_the_evaluations():
    assert build_prompt("How many?") == numerical_prompt("How many?")
    assert build_prompt("Which?", ["A. x", "B. y"]) == multiple_choice_prompt("Which?", ["A. x", "B. y"])


def test_answer_is_the_greedy_continuation_of_the_chat_prompt(pipe, video):
    clip = pipe.read(video)
    assert clip.num_frames == 8 and clip.size == (64, 96)
    prompt = build_prompt("How many chairs?")
    result = pipe.run(video, prompt, max_new_tokens=5)
    inputs = pipe.processor(clip, prompt)
    out = pipe.model.generate(**inputs, max_new_tokens=5, stop_token_ids=pipe.stop_token_ids)
    expected = [t for t in out[0, inputs["input_ids"].shape[1]:].tolist()]
    assert result.token_ids == expected[: len(result.token_ids)]
    assert result.text == pipe.decode(result.token_ids) == pipe.answer(video, prompt, max_new_tokens=5)
    assert result.prompt_tokens == inputs["input_ids"].shape[1] and result.num_frames == 8


def test_generation_stops_at_a_stop_token(pipe):
    pipe_stops = pipe.stop_token_ids
    assert pipe._until_stop([5, 6, pipe_stops[0], 7]) == [5, 6]
    assert pipe._until_stop([5, 6]) == [5, 6]


def test_images_are_one_frame_pair_each(pipe, tmp_path):
    from PIL import Image

    from spatial_ttt.demo import synthetic_frames

    paths = []
    for i, frame in enumerate(synthetic_frames(3, (64, 96))):
        Image.fromarray(frame).save(tmp_path / f"view{i}.jpg")
        paths.append(tmp_path / f"view{i}.jpg")
    clip = read_images(paths, size=(64, 96))
    assert clip.num_frames == 6 and clip.timestamps == (0.0, 0.0, 1.0, 1.0, 2.0, 2.0)
    assert torch.equal(clip.frames[0], clip.frames[1])
    assert isinstance(pipe.answer(paths, "Which view shows the sofa?", max_new_tokens=2), str)
    with pytest.raises(VideoError, match="image file not found"):
        read_images([tmp_path / "nope.png"])


def test_stream_frames_follow_the_files_grid(video):
    whole = [t for _, t in iter_video_frames(video, fps=2, size=(64, 96))]
    assert whole == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    parts = [t for a, b in ((0, 1.2), (1.2, 2.2), (2.2, None)) for _, t in iter_video_frames(video, fps=2, start_s=a, end_s=b)]
    assert parts == whole
    batches = list(chunk_frames(iter_video_frames(video, fps=2, size=(64, 96)), 4))
    assert [b.shape[0] for b, _ in batches] == [4, 2]


def test_streaming_in_segments_equals_streaming_at_once(pipe, video):
    prompt = build_prompt("How many chairs?")
    whole = pipe.open_stream()
    whole.observe_video(video)
    parts = pipe.open_stream()
    parts.observe_video(video, 0, 2.0)  # 2 fps, chunks of 16: [0, 0.5, 1, 1.5] then [2, 2.5]
    parts.observe_video(video, 2.0, None)
    assert whole.num_frames == parts.num_frames == 6
    a = whole.ask(prompt, max_new_tokens=4)
    assert a == parts.ask(prompt, max_new_tokens=4)
    assert a == whole.ask(prompt, max_new_tokens=4)  # asking leaves the memory unchanged
    whole.close()


def test_a_question_after_an_odd_number_of_frames_leaves_the_memory_unchanged(pipe, video):
    """Frames enter in pairs: 3 frames before the first question, the third waits for its pair (it used to be
    padded into the memory, so the stream saw 7 frames where the video has 6)."""
    from spatial_ttt.session_state import flatten

    prompt = build_prompt("How many chairs?")
    asked = pipe.open_stream()
    asked.observe_video(video, 0, 1.2)  # 2 fps: frames at 0, 0.5, 1.0
    asked.ask(build_prompt("Is there a table?"), max_new_tokens=2)
    asked.observe_video(video, 1.2, None)
    whole = pipe.open_stream()
    whole.observe_video(video)
    assert asked.num_frames == whole.num_frames == 6
    a, b = (flatten(s.session.stream)[0] for s in (asked, whole))  # the model state (queues are cut differently)
    assert asked.session.stream.model.num_tokens == whole.session.stream.model.num_tokens
    for key in (k for k in a if ".q" not in k):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)
    assert asked.ask(prompt, max_new_tokens=6) == whole.ask(prompt, max_new_tokens=6)


def test_a_processor_that_does_not_fit_is_refused(tmp_path):
    from spatial_ttt.pipeline import make_tiny_model_folder

    folder = make_tiny_model_folder(tmp_path / "m", vision_config={"patch_size": 14})
    with pytest.raises(ModelFolderError, match="patch_size: model 14, processor 16"):
        SpatialTTTPipeline.from_pretrained(folder)


def test_clips_are_used_as_given(pipe):
    clip = VideoClip(torch.zeros(2, 64, 96, 3, dtype=torch.uint8), (0.0, 0.5))
    assert pipe.read(clip) is clip
    with pytest.raises(TypeError):
        pipe.read(3)


def test_the_lmms_loader_string_resolves(tiny_folder):
    from spatial_ttt.eval.lmms_plugin import import_loader

    assert isinstance(import_loader("spatial_ttt.pipeline:load_pipeline")(str(tiny_folder)), SpatialTTTPipeline)


def test_pixels_come_in_the_vision_towers_dtype_and_give_its_logits(tiny_folder, video):
    """A bf16 model gets bf16 pixels from the pipeline (half the bytes to move); its tower casts fp32 pixels to
    bf16 first, so the logits are those of the fp32 pixels, bit for bit."""
    pipe = SpatialTTTPipeline.from_pretrained(tiny_folder, size=(64, 96), num_frames=8, dtype=torch.bfloat16)
    prompt = build_prompt("How many chairs?")
    inputs = pipe.inputs(pipe.read(video), prompt)
    assert inputs["pixel_values_videos"].dtype == torch.bfloat16 and not inputs["pixel_values_videos"].is_pinned()
    full = dict(inputs, pixel_values_videos=pipe.processor(pipe.read(video), prompt)["pixel_values_videos"])
    assert full["pixel_values_videos"].dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(pipe.model(**inputs).logits, pipe.model(**full).logits)
