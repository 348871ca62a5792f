from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The reference implementation's outputs on the tiny random model, carried in tests/fixtures/golden."""
    path = Path(__file__).resolve().parent / "fixtures/golden/official_tiny"
    assert path.is_dir(), f"golden fixtures missing at {path}"
    return path


@pytest.fixture(scope="session")
def processor_dir(tmp_path_factory) -> Path:
    """A working tiny Qwen3-VL processor folder (ids match spatial_ttt.tiny's model)."""
    from spatial_ttt.video import make_tiny_processor

    folder = tmp_path_factory.mktemp("processor")
    make_tiny_processor(folder)
    return folder


@pytest.fixture(scope="session")
def processor(processor_dir):
    from spatial_ttt.video import SpatialTTTProcessor

    return SpatialTTTProcessor.from_pretrained(processor_dir)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
