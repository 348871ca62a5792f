"""Our resumable 3D rope positions agree with transformers' Qwen3-VL get_rope_index."""

import torch
from transformers import Qwen3VLConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

from spatial_ttt.models.positions import rope_positions
from spatial_ttt.tiny import tiny_config

from .helpers import video_prompt


def test_positions_match_transformers_and_resume_in_pieces():
    config = tiny_config()
    inputs = video_prompt(frames_groups=3, grid_hw=4, batch=2)
    ids = inputs["input_ids"]
    types = (ids == 501).long() * 2
    hf = Qwen3VLModel(Qwen3VLConfig(text_config=config.text_config.to_dict(), vision_config=config.vision_config.to_dict()))
    expected, deltas = hf.get_rope_index(ids, types, video_grid_thw=inputs["video_grid_thw"])
    ours, next_pos = rope_positions(types, None, inputs["video_grid_thw"], 2, torch.zeros(2, dtype=torch.long))
    assert torch.equal(ours, expected)
    assert next_pos.tolist() == (deltas.flatten() + ids.shape[1]).tolist()
    # the same positions when the prompt arrives in two pieces (split after the first temporal group)
    cut = 3 + 2 + 4 + 1
    zeros = torch.zeros(2, dtype=torch.long)
    first, mid = rope_positions(types[:, :cut], None, torch.tensor([[1, 4, 4]] * 2), 2, zeros)
    second, _ = rope_positions(types[:, cut:], None, torch.tensor([[2, 4, 4]] * 2), 2, mid)
    assert torch.equal(torch.cat([first, second], -1), expected)


def test_an_image_beside_a_video_matches_transformers_and_bad_grids_are_refused():
    """An image grid ([1, 4, 4]: 4 tokens) before a two-group video: each grid's positions start where the text
    left off (grids of one size share their offsets, made once). Tokens that do not fill a grid, and a grid
    with no tokens left for it, raise."""
    import pytest

    config = tiny_config()
    ids = torch.tensor([[7, 8, 502] + [500] * 4 + [503, 20, 502] + [501] * 4 + [503, 21, 502] + [501] * 4 + [503, 9]])
    types = (ids == 500).long() + (ids == 501).long() * 2
    image, video = torch.tensor([[1, 4, 4]]), torch.tensor([[2, 4, 4]])
    hf = Qwen3VLModel(Qwen3VLConfig(text_config=config.text_config.to_dict(), vision_config=config.vision_config.to_dict()))
    expected, _ = hf.get_rope_index(ids, types, image_grid_thw=image, video_grid_thw=video)
    ours, _ = rope_positions(types, image, video, 2, torch.zeros(1, dtype=torch.long))
    assert torch.equal(ours, expected)
    with pytest.raises(ValueError, match="vision tokens at 3 do not match the given grid_thw"):
        rope_positions(types[:, :5], image, None, 2, torch.zeros(1, dtype=torch.long))  # 2 of the image's 4 tokens
    with pytest.raises(ValueError, match="more video grids given than the prompt has"):
        rope_positions(types, image, torch.tensor([[3, 4, 4]]), 2, torch.zeros(1, dtype=torch.long))
