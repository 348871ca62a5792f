"""Tiny random Spatial-TTT models built in code: for tests, the embedded demo and quick experiments."""

from __future__ import annotations

from typing import Any

import torch

from .configuration import SpatialTTTConfig
from .models.modeling import SpatialTTTForConditionalGeneration, is_ttt_parameter


def tiny_config(**overrides: Any) -> SpatialTTTConfig:
    """The shape of shared/golden/official_tiny: 8 layers, hidden 64, 4 heads (2 KV), head_dim 16, vocab 512,
    vision depth 2 / hidden 32 / patch 16 with deepstack [0, 1]; TTT layers 0/1/2/4/5/6, chunk 40.
    Keyword overrides go to SpatialTTTConfig (text_config / vision_config dicts are merged)."""
    text = dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True},
    )
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0, 1],
    )
    text.update(overrides.pop("text_config", {}))
    vision.update(overrides.pop("vision_config", {}))
    settings = dict(
        image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503,
        ttt_layers=[0, 1, 2, 4, 5, 6], num_lact_heads=4, lact_chunk_size=40, window_size=4096,
    )
    settings.update(overrides)
    return SpatialTTTConfig(text_config=text, vision_config=vision, **settings)


def tiny_model(seed: int = 0, perturb_ttt: bool = True, **overrides: Any) -> SpatialTTTForConditionalGeneration:
    """A tiny random model in eval mode. ``perturb_ttt`` moves every TTT parameter off its neutral init
    (as the golden fixtures do) so that each one matters; otherwise the TTT branch starts switched off."""
    torch.manual_seed(seed)
    model = SpatialTTTForConditionalGeneration(tiny_config(**overrides))
    if perturb_ttt:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if is_ttt_parameter(name, model.config.ttt_layers):
                    param.add_(0.1 * torch.randn_like(param))
    return model.eval()
