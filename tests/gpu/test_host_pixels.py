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
