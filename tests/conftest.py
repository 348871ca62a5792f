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


def write_released_folder(golden_case: Path, folder: Path, *, tie: bool = False) -> Path:
    """The authors' released layout built from a golden fixture: the same tensors under the same names, and a
    plain Qwen3-VL config.json written by transformers' Qwen3VLConfig (model_type qwen3_vl, no TTT settings).
    ``tie``: tied embeddings, saved without lm_head.weight as save_pretrained does."""
    import json

    from safetensors.torch import load_file, save_file
    from transformers import Qwen3VLConfig

    qwen = json.loads((golden_case / "config.json").read_text())["qwen3vl_config"]
    qwen = {k: v for k, v in qwen.items() if k not in ("model_type", "architectures", "transformers_version")}
    qwen["tie_word_embeddings"] = tie
    Qwen3VLConfig(**qwen, architectures=["Qwen3VLForConditionalGeneration"]).save_pretrained(folder)
    tensors = load_file(golden_case / "model.safetensors")
    if tie:
        del tensors["lm_head.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def released_dir(golden_dir, tmp_path_factory) -> Path:
    """golden muon_off in the released layout (see write_released_folder)."""
    return write_released_folder(golden_dir / "muon_off", tmp_path_factory.mktemp("released") / "muon_off")


@pytest.fixture(scope="session")
def write_released():
    """write_released_folder, for tests that need a variant (e.g. tied embeddings)."""
    return write_released_folder


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and many times slower with two on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
