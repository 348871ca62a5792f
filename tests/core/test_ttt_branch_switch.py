"""ttt_branch: false turns TTT layers into sliding-window attention only (the evidence study's ablation)."""

from __future__ import annotations

import torch

from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_branch_off_ignores_fast_weights_and_equals_window_attention_alone():
    inputs = video_prompt(frames_groups=3)
    off = tiny_model(seed=3, ttt_branch=False, window_size=6)
    on = tiny_model(seed=3, window_size=6)
    base = _logits(off, inputs)
    assert not torch.allclose(base, _logits(on, inputs), atol=1e-3)  # the branch matters when it is on
    for model in (off, on):
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                if layer.is_ttt:
                    layer.self_attn.w1.mul_(3.0)
    assert torch.equal(_logits(off, inputs), base)  # ... and not at all when it is off
    # off == each TTT layer reduced to its windowed attention: same output as zeroing the branch's gate
    with torch.no_grad():
        for layer in on.model.language_model.layers:
            if layer.is_ttt:
                layer.self_attn.ttt_scale_proj.weight.zero_()
                layer.self_attn.ttt_scale_proj.bias.zero_()
    torch.testing.assert_close(_logits(on, inputs), base, rtol=0, atol=1e-5)
