"""What a distribution gets: ``python -m build`` makes a clean sdist and wheel that carry the
license, py.typed, the man page and the completions, and the installed wheel runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from qmpsh import __version__
from tests.conftest import REPO

SOURCES = ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "qmpsh", "completions"]
DATA = {
    "share/man/man1/qmpsh.1": "qmpsh/qmpsh.1",
    "share/bash-completion/completions/qmpsh.bash": "completions/qmpsh.bash",
    "share/zsh/site-functions/_qmpsh": "completions/_qmpsh",
    "share/fish/vendor_completions.d/qmpsh.fish": "completions/qmpsh.fish",
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel built from a copy of the checkout (the build writes into its source tree)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                            capture_output=True, text=True, env=env, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    noise = [line for line in log.splitlines() if "warn" in line.lower() or "deprecat" in line.lower()]
    assert not noise, "\n".join(noise)
    return out


def test_sdist(dist):
    (sdist,) = dist.glob("qmpsh-*.tar.gz")
    assert sdist.name == f"qmpsh-{__version__}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO", "qmpsh/py.typed", "qmpsh/__main__.py",
            *DATA.values()} <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_wheel(dist):
    (wheel,) = dist.glob("qmpsh-*.whl")
    assert wheel.name == f"qmpsh-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        info = f"qmpsh-{__version__}.dist-info"
        metadata = HeaderParser().parsestr(whl.read(f"{info}/METADATA").decode())
        for installed, committed in DATA.items():
            assert whl.read(f"qmpsh-{__version__}.data/data/{installed}") == (REPO / committed).read_bytes()
        assert whl.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
    assert "qmpsh/py.typed" in names and "qmpsh/qmpsh.1" not in names
    assert metadata["License-Expression"] == "GPL-2.0-or-later"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Description-Content-Type"] == "text/markdown"
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Operating System :: POSIX :: Linux" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # License-Expression says it
    assert "GNU GENERAL PUBLIC LICENSE" in (REPO / "LICENSE").read_text() and "Version 2" in (
        REPO / "LICENSE").read_text()


def test_installed_wheel_runs(dist, tmp_path):
    """Installed (without its dependencies: --version needs none) into a prefix: the script,
    python -m qmpsh and the man page."""
    (wheel,) = dist.glob("qmpsh-*.whl")
    prefix = tmp_path / "prefix"
    before = _installed_qmpsh()
    # --ignore-installed: without it pip would first uninstall the qmpsh this test suite runs
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    "--prefix", str(prefix), str(wheel)], check=True, capture_output=True, timeout=120)
    assert _installed_qmpsh() == before
    purelib = sysconfig.get_path("purelib", vars={"base": str(prefix)})
    env = {**os.environ, "PYTHONPATH": purelib}
    for command in ([str(prefix / "bin" / "qmpsh"), "--version"], [sys.executable, "-m", "qmpsh", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
        assert (result.returncode, result.stdout) == (0, f"qmpsh {__version__}\n"), result.stderr
    located = subprocess.run([sys.executable, "-c", "import qmpsh; print(qmpsh.__file__)"], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=30).stdout
    assert located.startswith(purelib)  # the wheel's copy ran, not the checkout's
    assert (prefix / "share" / "man" / "man1" / "qmpsh.1").read_bytes() == (REPO / "qmpsh" / "qmpsh.1").read_bytes()


def _installed_qmpsh() -> str:
    """Where this environment's qmpsh distribution is recorded (unchanged by the test's install)."""
    result = subprocess.run([sys.executable, "-m", "pip", "show", "-f", "qmpsh"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, "qmpsh is not installed in the test environment"
    return result.stdout
