"""The device-call scripts under benchmarks/ (run only on the GPU machine, where a typo costs a call): each parses
as bash, and every benchmark script they call exists and accepts every option they pass it. Runs nothing."""

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(ROOT.glob("benchmarks/**/*.sh"))


def python_calls(script: Path) -> list[tuple[str, list[str]]]:
    """(script path, its --options) for every ``python3 benchmarks/....py`` the shell script runs."""
    text = script.read_text().replace("\\\n", " ")  # continued lines as one
    calls = []
    for line in text.splitlines():
        for match in re.finditer(r"python3? (benchmarks/\S+\.py)([^;|&>]*)", line):
            options = [w.split("=")[0] for w in shlex.split(match.group(2), comments=True) if w.startswith("--")]
            calls.append((match.group(1), options))
    return calls


def test_there_are_scripts_and_calls_to_check():
    assert len(SCRIPTS) >= 5
    assert any(python_calls(s) for s in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_script_parses_as_bash(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@functools.cache
def usage(path: str) -> subprocess.CompletedProcess:
    """``python PATH --help``, once per benchmark however many scripts call it (each start imports torch)."""
    return subprocess.run([sys.executable, str(ROOT / path), "--help"], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'benchmarks'}", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("script", [s for s in SCRIPTS if python_calls(s)], ids=lambda p: p.name)
def test_each_called_benchmark_accepts_the_options_passed(script):
    for path, options in python_calls(script):
        assert (ROOT / path).is_file(), f"{script.name} calls {path}, which does not exist"
        help_run = usage(path)
        assert help_run.returncode == 0, f"{path} --help failed: {help_run.stderr[-500:]}"
        missing = [o for o in options if not re.search(rf"{re.escape(o)}\b", help_run.stdout)]
        assert not missing, f"{script.name} passes {missing} to {path}, which does not take them"
