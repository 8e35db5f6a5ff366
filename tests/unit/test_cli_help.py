"""--help is as wide as the terminal says, found without importing shutil."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from qmpsh import cli


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [50, 120])
def test_help_wraps_to_columns(monkeypatch, capsys, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    text = help_text(capsys)
    options = text[text.index("options:"):text.index("\ninput:")]  # the epilog is pre-wrapped at 79
    option_lines = options.splitlines()[1:]
    assert option_lines
    # argparse wraps at COLUMNS - 2
    assert max(len(line) for line in option_lines) <= columns - 2
    if columns > 80:
        assert max(len(line) for line in option_lines) > 80  # it really uses the width it is given


@pytest.mark.parametrize("value", ["", "0", "-5", "wide"])
def test_unusable_columns_fall_back_to_the_terminal_then_80(monkeypatch, value):
    monkeypatch.setenv("COLUMNS", value)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((132, 40)))
    assert cli._terminal_columns() == 132
    monkeypatch.setattr(os, "get_terminal_size", no_terminal)
    assert cli._terminal_columns() == 80


def no_terminal(fd: int) -> os.terminal_size:
    raise OSError(25, "Inappropriate ioctl for device")


@pytest.mark.parametrize("columns", [None, "0", "37", "200"])
def test_width_is_argparses_own(monkeypatch, columns):
    """The same width argparse's formatter finds through shutil, with or without a terminal."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    for size in (lambda fd: os.terminal_size((101, 30)), no_terminal):
        monkeypatch.setattr(os, "get_terminal_size", size)
        assert cli._help_formatter("qmpsh")._width == argparse.HelpFormatter("qmpsh")._width


def test_build_parser_does_not_import_shutil():
    code = "import sys; from qmpsh import cli; cli.build_parser(); print('shutil' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
