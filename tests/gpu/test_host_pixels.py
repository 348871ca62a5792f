"""Pixels left in host memory give the tokens of pixels on the GPU, one-shot and in pieces (CUDA only)."""

import pytest
import torch

from spatial_ttt.tiny import tiny_model

from core.helpers import video_prompt

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("piece_tokens", [1000, 14])  # one forward; pieces of 1-2 frame groups
def test_host_pixels_give_the_tokens_of_device_pixels(piece_tokens):
    """Was: the vision tower got the pixels where they were; host pixels with a GPU model failed."""
    model = tiny_model(use_muon=False, lact_chunk_size=10, prefill_piece=piece_tokens).cuda()
    inputs = video_prompt(frames_groups=9, grid_hw=4)  # 71 tokens
    on_gpu = {k: v.cuda() for k, v in inputs.items()}
    host = dict(on_gpu, pixel_values_videos=inputs["pixel_values_videos"].pin_memory())
    expected = model.generate(**on_gpu, max_new_tokens=6, stop_token_ids=[])
    assert model.generate(**host, max_new_tokens=6, stop_token_ids=[]).tolist() == expected.tolist()
    unpinned = dict(on_gpu, pixel_values_videos=inputs["pixel_values_videos"])
    assert model.generate(**unpinned, max_new_tokens=6, stop_token_ids=[]).tolist() == expected.tolist()


@cuda
def test_the_pipeline_pins_pixels_in_the_towers_dtype_with_the_tokens_of_fp32_pixels(tmp_path, monkeypatch):
    """On CUDA the processor writes the pipeline's pixels pinned and in bf16 for a bf16 model; one-shot and streamed,
    the tokens are those of the fp32 pageable pixels the processor writes by default."""
    from spatial_ttt import streaming
    from spatial_ttt.pipeline import SpatialTTTPipeline, make_tiny_model_folder
    from spatial_ttt.video import VideoClip

    folder = make_tiny_model_folder(tmp_path / "model", use_muon=False)
    pipe = SpatialTTTPipeline.from_pretrained(folder, dtype=torch.bfloat16, device="cuda")
    g = torch.Generator().manual_seed(0)
    clip = VideoClip(torch.randint(0, 256, (8, 64, 96, 3), dtype=torch.uint8, generator=g), tuple(range(8)))
    inputs = pipe.inputs(clip, "How many chairs?")
    pixels = inputs["pixel_values_videos"]
    assert pixels.dtype == torch.bfloat16 and pixels.is_pinned() and pixels.device.type == "cpu"
    full = dict(inputs, pixel_values_videos=pipe.processor(clip, "How many chairs?")["pixel_values_videos"])
    assert full["pixel_values_videos"].dtype == torch.float32 and not full["pixel_values_videos"].is_pinned()
    expected = pipe.model.generate(**full, max_new_tokens=6, stop_token_ids=[])
    assert pipe.model.generate(**inputs, max_new_tokens=6, stop_token_ids=[]).tolist() == expected.tolist()
    answers = []
    for target in (streaming.pixel_target, lambda dtype, device: dict(pixel_dtype=torch.float32, pin_memory=False)):
        monkeypatch.setattr(streaming, "pixel_target", target)
        session = pipe.stream()
        session.observe(clip)
        answers.append(session.ask("How many chairs?", max_new_tokens=6, stop_token_ids=[]))
    assert answers[0] == answers[1]
