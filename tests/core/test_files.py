"""spatial_ttt.files: the one atomic-write helper every result, dataset and benchmark file goes through."""

from __future__ import annotations

import json
import os
import stat

import pytest

from spatial_ttt.files import atomic_write_json, atomic_write_text


def test_a_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "new" / "folder" / "results.json"  # missing folders are made
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["results.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by others, as a plain write would leave it


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"accuracy": 0.5})
    with pytest.raises(TypeError):  # not JSON: fails before anything is written
        atomic_write_json(path, {"accuracy": object()})

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):  # fails mid-write: the temp file is removed
        atomic_write_text(path, "a new summary")
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_indented_json_ends_with_a_newline_and_compact_json_does_not(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": [1, 2]}, indent=2)
    atomic_write_json(tmp_path / "b.json", {"x": [1, 2]})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    assert (tmp_path / "b.json").read_text() == '{"x": [1, 2]}'
