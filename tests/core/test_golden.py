"""Parity with the reference implementation's outputs on the tiny random model (shared/golden)."""

import pytest
import torch
from safetensors.torch import load_file

from spatial_ttt import load_reference_checkpoint


def load_case(golden_dir, case):
    folder = golden_dir / case
    return load_reference_checkpoint(folder), load_file(folder / "inputs.safetensors"), load_file(folder / "expected.safetensors")


@pytest.mark.parametrize("reference_path", ["logits_stream", "logits_train"])
def test_muon_off_logits_match_reference(golden_dir, reference_path):
    model, inputs, expected = load_case(golden_dir, "muon_off")
    with torch.no_grad():
        logits = model(**inputs).logits
    # measured: 5.6e-6 (stream) and 5.8e-6 (train) max abs difference
    torch.testing.assert_close(logits, expected[reference_path], atol=1e-4, rtol=0)


def test_muon_off_greedy_tokens_match_reference(golden_dir):
    model, inputs, expected = load_case(golden_dir, "muon_off")
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 12)
    assert torch.equal(out[0, : inputs["input_ids"].shape[1]], inputs["input_ids"][0])
    assert out[0, -12:].tolist() == expected["generated"].tolist()


def test_muon_on_logits_agree_within_bf16_newton_schulz_noise(golden_dir):
    """Newton-Schulz runs in bf16 and this random model amplifies its rounding chaotically: a mathematically
    identical re-association of our own NS moves the logits by relative L2 0.52 (top-1 agreement 0.51), and the
    reference's own two paths differ by 0.125; exact fp32 NS lands at 0.576 / 0.554. Measured against the
    reference: relative L2 0.419 (stream) / 0.419 (train), top-1 agreement 0.619 / 0.631. Structural errors
    land far outside that band: Muon skipped 1.258 / 0.095, momentum skipped 0.961 / 0.339, chunk 41 instead of
    40 1.055 / 0.137; the thresholds sit between. Text tokens before the first video token see no update
    (directly or through the temporal conv) and must match exactly."""
    model, inputs, expected = load_case(golden_dir, "muon_on")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    for name in ("logits_stream", "logits_train"):
        reference = expected[name][0]
        rel_l2 = ((logits - reference).norm() / reference.norm()).item()
        top1 = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
        assert rel_l2 < 0.75, (name, rel_l2)
        assert top1 > 0.45, (name, top1)
    first_video = int((inputs["input_ids"][0] == 501).nonzero()[0])
    torch.testing.assert_close(logits[:first_video], expected["logits_stream"][0, :first_video], atol=1e-4, rtol=0)
