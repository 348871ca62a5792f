"""ttt_layers = every layer (the paper's "TTT everywhere", no full-attention anchor; configs/evidence_ttt_all.yaml)
and its windowed-only twin (configs/evidence_swa_all.yaml): the clean memory test of benchmarks/EVIDENCE.md.

A stack of L windowed layers (window w) sees at most L * (w - 1) tokens back, so a token further back can reach
the last position only through the fast weights (or a full-attention anchor)."""

from __future__ import annotations

import pytest
import torch

from spatial_ttt.tiny import tiny_config, tiny_model

LAYERS, WINDOW, LENGTH = 4, 8, 48  # 4 * 7 = 28 tokens of reach: position 0 is out of sight of position 47


def _last_logits_change(model, length: int = LENGTH) -> float:
    """How much the last position's logits move when only the first token changes (text only)."""
    ids = torch.arange(10, 10 + length)[None]
    other = ids.clone()
    other[0, 0] = 300
    with torch.no_grad():
        return float((model(input_ids=ids).logits[0, -1] - model(input_ids=other).logits[0, -1]).abs().max())


def _model(ttt_layers: list[int], **settings) -> torch.nn.Module:
    return tiny_model(seed=5, text_config={"num_hidden_layers": LAYERS}, ttt_layers=ttt_layers, window_size=WINDOW,
                      lact_chunk_size=WINDOW, **settings)


def test_config_accepts_every_layer_as_ttt_layer():
    config = tiny_config(text_config={"num_hidden_layers": LAYERS}, ttt_layers=[0, 1, 2, 3])
    assert config.ttt_layers == [0, 1, 2, 3]
    model = _model([0, 1, 2, 3])
    assert all(layer.is_ttt for layer in model.model.language_model.layers)
    with pytest.raises(ValueError, match=r"ttt_layers \[4\] outside 0..3"):
        tiny_config(text_config={"num_hidden_layers": LAYERS}, ttt_layers=[0, 1, 2, 3, 4])


def test_windowed_stack_cannot_see_past_its_reach_but_memory_and_anchor_can():
    assert _last_logits_change(_model([0, 1, 2, 3], ttt_branch=False)) == 0.0  # swa-all: out of reach, exactly
    assert _last_logits_change(_model([0, 1, 2, 3])) > 1e-4  # ttt-all: the fast weights carry it
    assert _last_logits_change(_model([0, 1, 2], ttt_branch=False)) > 1e-4  # the first study's "window": its anchor sees it


def test_windowed_stack_reach_is_layers_times_window_minus_one():
    model = _model([0, 1, 2, 3], ttt_branch=False)
    reach = LAYERS * (WINDOW - 1)
    assert _last_logits_change(model, reach + 1) > 1e-4  # the first token is `reach` back: seen
    assert _last_logits_change(model, reach + 2) == 0.0  # one further: not
