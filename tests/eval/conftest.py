"""Fixtures for the evaluation tests; helpers live in eval_fixtures.py (a unique module name)."""

from eval_fixtures import (  # noqa: F401 - re-exported as pytest fixtures
    tiny_folder,
    vsibench_dir,
    vsibench_model,
)
