"""docs/model.md's snippets run exactly as written, from the repository root."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/model.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def test_python_snippets_run(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    snippets = blocks("python")
    assert snippets
    for snippet in snippets:
        exec(compile(snippet, "docs/model.md", "exec"), {})
    assert "lact_chunk_size = 56 (override)" in capsys.readouterr().out


def test_bash_snippets_run():
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"], COLUMNS="200")
    snippets = blocks("bash")
    assert snippets
    for snippet in snippets:
        result = subprocess.run(snippet, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)["ttt_settings"]
    assert settings["lact_chunk_size"] == {"value": 56, "source": "override"}
    assert settings["use_muon"] == {"value": False, "source": "override"}
