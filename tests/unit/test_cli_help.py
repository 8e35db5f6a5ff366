"""--help is as wide as the terminal says, found without importing shutil."""

from __future__ import annotations

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
def test_unusable_columns_fall_back(monkeypatch, value):
    monkeypatch.setenv("COLUMNS", value)
    assert cli._terminal_columns() > 0  # a terminal's width, or 80 when stdout is no terminal


def test_build_parser_does_not_import_shutil():
    code = "import sys; from qmpsh import cli; cli.build_parser(); print('shutil' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
