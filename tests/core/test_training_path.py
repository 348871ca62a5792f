"""The model is differentiable end to end: every TTT parameter gets a gradient from the LM loss."""

import torch

from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def test_every_ttt_parameter_receives_a_gradient_and_checkpointing_matches():
    model = tiny_model(lact_chunk_size=8, use_muon=False).train()
    inputs = video_prompt(frames_groups=3, grid_hw=4)
    labels = inputs["input_ids"].clone()
    labels[:, :-5] = -100  # loss on the last tokens only, like answer tokens
    loss = model(**inputs, labels=labels).loss
    loss.backward()
    ttt_layers = tuple(f".layers.{i}.self_attn." for i in model.config.ttt_layers)
    ttt = {n: p.grad for n, p in model.named_parameters() if any(t in n for t in ttt_layers) and ".attn_layer." not in n}
    assert len(ttt) == 6 * 17  # w0-2, lr_proj (2), q/k scale/offset (4), ttt_scale_proj (2), ttt_norm, momentum (2), conv q/k/v
    dead = [n for n, g in ttt.items() if g is None or g.abs().sum() == 0]
    assert not dead, dead
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.model.language_model.gradient_checkpointing
    checkpointed = model(**inputs, labels=labels).loss
    checkpointed.backward()
    torch.testing.assert_close(checkpointed, loss)
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-6, rtol=1e-5)
