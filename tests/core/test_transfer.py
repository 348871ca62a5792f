"""spatial_ttt.transfer.to_device on the CPU: the same values, cast where asked, the tensor itself when nothing
is to move (tests/gpu/test_host_pixels.py checks the staged host-to-GPU copy)."""

import torch

from spatial_ttt.transfer import to_device


def test_on_the_cpu_nothing_is_copied_and_the_cast_is_torchs():
    t = torch.randn(7, 5)
    assert to_device(t, torch.device("cpu")) is t
    cast = to_device(t, "cpu", torch.bfloat16)
    assert cast.dtype == torch.bfloat16 and torch.equal(cast, t.to(torch.bfloat16))
