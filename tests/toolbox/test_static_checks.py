"""``mypy --strict`` on qmpsh/ and ``ruff check`` on the repository pass, with the settings in
pyproject.toml ([tool.mypy], [tool.ruff]). Both come with the test extra."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_mypy_strict_finds_nothing():
    # its cache is .mypy_cache/ (ignored by git): a run after the first checks only what changed
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr
