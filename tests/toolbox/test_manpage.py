"""qmpsh(1): written from the parser --help uses, current in the repository, clean for groff."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from qmpsh import __version__, manpage
from qmpsh.cli import HELP_SECTIONS, build_parser
from tests.conftest import REPO

PAGE = REPO / "qmpsh" / "qmpsh.1"


def run_manpage(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    result = subprocess.run([sys.executable, "-m", "qmpsh.manpage"], capture_output=True, text=True,
                            env={**environ, **env}, cwd=REPO, timeout=30)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout


def test_committed_page_is_current():
    assert PAGE.read_text() == run_manpage(), "qmpsh/qmpsh.1 is stale: python -m qmpsh.manpage > qmpsh/qmpsh.1"


def test_page_says_what_help_says():
    page = manpage.render()
    parser = build_parser()
    for action in parser._actions:
        for option in action.option_strings:
            assert manpage.bold(option) in page
        assert manpage.escape(action.help) in page, action.help
    for _, items in HELP_SECTIONS:
        for term, text in items:
            assert manpage.bold(term) in page and manpage.escape(text) in page
    assert f'"qmpsh {__version__}"' in page


def test_source_date_epoch_dates_the_page():
    assert '.TH QMPSH 1 "2024-03-01"' in run_manpage(SOURCE_DATE_EPOCH="1709251200")


def test_groff_formats_it_without_warnings():
    if shutil.which("groff") is None:
        pytest.fail("groff is missing: run 'bash .ci/setup test' (installs Debian's groff-base)")
    result = subprocess.run(["groff", "-man", "-ww", "-z"], input=PAGE.read_text(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = subprocess.run(["groff", "-man", "-Tutf8", "-P", "-cbou"], input=PAGE.read_text(), capture_output=True,
                          text=True, timeout=30, env={**os.environ, "MANWIDTH": "80"}).stdout
    assert "qmpsh - an interactive shell for the QEMU Machine Protocol (QMP)" in text.replace("\u2010", "-")
    for heading in ("SYNOPSIS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f"\n{heading}\n" in text


def test_version():
    result = subprocess.run([sys.executable, "-m", "qmpsh", "--version"], capture_output=True, text=True,
                            cwd=REPO, timeout=30)
    assert (result.returncode, result.stdout) == (0, f"qmpsh {__version__}\n")


def test_every_built_in_is_described():
    from qmpsh.commands import BUILTINS

    page = manpage.render()
    assert ".SH BUILT-IN COMMANDS" in page
    for name in BUILTINS:
        assert f"\\fB/{name}" in page, name


def shell_example(commands: list[str], socket: str) -> subprocess.CompletedProcess[str]:
    """Run an example's lines in bash, ``qmpsh`` being this checkout's and SOCK a real QMP socket."""
    script = "\n".join(commands).replace("SOCK", socket)
    shell_script = f'qmpsh() {{ "{sys.executable}" -m qmpsh "$@"; }}\n{script}'
    return subprocess.run(["bash", "-euo", "pipefail", "-c", shell_script],
                          capture_output=True, text=True, timeout=120, cwd=os.path.dirname(socket),
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_examples_run(qemu):
    ran = 0
    for text, commands in manpage.EXAMPLES:
        if "SOCK" not in " ".join(commands):
            continue
        result = shell_example(commands, qemu.socket)
        assert result.returncode == 0, (text, result.stderr)
        assert "error" not in result.stderr, (text, result.stderr)
        assert result.stdout.strip(), text
        ran += 1
    assert ran >= 4
    assert (qemu.dir / "b.qcow2").exists() and (qemu.dir / "qmp.log").exists()


def test_the_launch_examples_run(tmp_path):
    launches = [commands for _, commands in manpage.EXAMPLES if "--launch" in commands[0]]
    assert len(launches) == 2
    for (command,) in launches:
        argv = command.split()[1:]
        env = {**os.environ, "TMPDIR": str(tmp_path)}
        env.pop("DISPLAY", None)
        result = subprocess.run([sys.executable, "-m", "qmpsh", *argv], input="query-status\n", capture_output=True,
                                text=True, timeout=120, cwd=REPO, env=env)
        assert result.returncode == 0, result.stderr
        assert '"status"' in result.stdout
