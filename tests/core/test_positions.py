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
