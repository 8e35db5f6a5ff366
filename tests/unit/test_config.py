"""The config file: where it is, what it may say, and that options given on the command line win.

``main()`` is run in-process up to the point where it would connect: the
address is a socket path that does not exist, so a run that got past the
config file ends with exit status 3 (connection failed), and ``_run`` is
replaced to capture the options it was given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from qmpsh import cli, config
from tests.conftest import write_config


def parsed(monkeypatch: pytest.MonkeyPatch, *argv: str) -> argparse.Namespace | int:
    """The options main() would run with, or its exit status when it stops before that."""
    seen: list[argparse.Namespace] = []

    async def fake_run(args: argparse.Namespace, *rest: object) -> cli._SessionEnd:
        seen.append(args)
        return cli._SessionEnd(interactive=False, lost=False, failed=False, stdout_error=None, unrecorded=False)

    monkeypatch.setattr(cli, "_run", fake_run)
    status = cli.main([*argv, "/nonexistent/qmp.sock"])
    return seen[0] if seen else status


FULL = """\
# every key qmpsh reads
pretty = true
color = "never"
events = "hide:JOB_STATUS_CHANGE,BLOCK_JOB_*"
timestamps = "relative"
history-size = 50
editing-mode = "vi"
"""


def test_defaults_without_a_config_file(monkeypatch):
    args = parsed(monkeypatch)
    assert (args.pretty, args.color, str(args.events), args.timestamps, args.history_size, args.editing_mode) == (
        False, "auto", "all", "absolute", cli.DEFAULT_HISTORY_SIZE, "emacs")


def test_the_file_sets_every_key(monkeypatch):
    write_config(FULL)
    args = parsed(monkeypatch)
    assert args.pretty is True
    assert args.color == "never"
    assert args.events == "hide:JOB_STATUS_CHANGE,BLOCK_JOB_*"
    assert args.timestamps == "relative"
    assert args.history_size == 50
    assert args.editing_mode == "vi"


def test_options_on_the_command_line_win(monkeypatch):
    write_config(FULL)
    args = parsed(monkeypatch, "--no-pretty", "--color", "always", "--events", "all", "--timestamps", "off",
                  "--history-size", "7", "--editing-mode", "emacs")
    assert (args.pretty, args.color, str(args.events), args.timestamps, args.history_size, args.editing_mode) == (
        False, "always", "all", "off", 7, "emacs")
    assert parsed(monkeypatch, "--colour=auto").color == "auto"  # the alias wins as well


def test_the_file_takes_every_spelling_the_command_line_takes(monkeypatch):
    write_config('colour = "never"\n')  # --colour is --color's other name
    assert parsed(monkeypatch).color == "never"


def test_pretty_from_the_command_line_over_a_file_without_it(monkeypatch):
    write_config('color = "never"\n')
    args = parsed(monkeypatch, "-p")
    assert (args.pretty, args.color) == (True, "never")


def test_qmpsh_config_names_another_file(monkeypatch, tmp_path):
    write_config('color = "always"\n')
    other = tmp_path / "other.toml"
    other.write_text('color = "never"\n')
    monkeypatch.setenv("QMPSH_CONFIG", str(other))
    assert parsed(monkeypatch).color == "never"
    monkeypatch.setenv("QMPSH_CONFIG", "")  # set and empty: no config file at all
    assert parsed(monkeypatch).color == "auto"


def test_xdg_default_location(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path() == (str(tmp_path / ".config" / "qmpsh" / "config.toml"), False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # not absolute: ignored, as the XDG spec says
    assert config.config_path() == (str(tmp_path / ".config" / "qmpsh" / "config.toml"), False)
    monkeypatch.setenv("QMPSH_CONFIG", "/etc/qmpsh.toml")
    assert config.config_path() == ("/etc/qmpsh.toml", True)


def test_history_location_follows_the_same_xdg_rules(monkeypatch, tmp_path):
    from qmpsh.repl import state_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert state_dir() == tmp_path / "state" / "qmpsh"
    for unusable in ("", "relative/dir"):  # empty or relative: the default, as for the config file
        monkeypatch.setenv("XDG_STATE_HOME", unusable)
        assert state_dir() == tmp_path / ".local" / "state" / "qmpsh"


def test_help_and_version_work_with_a_broken_file(monkeypatch, capsys):
    write_config("pretty = \n")
    for option in ("--help", "--version"):
        with pytest.raises(SystemExit) as stop:
            cli.main([option])
        assert stop.value.code == 0
    assert "qmpsh" in capsys.readouterr().out


BROKEN = [
    # (file, the one line of error after "qmpsh: PATH")
    ("pretty = true\ncolor = \n", ":2:9: not valid TOML: invalid value"),
    ("pretty = true\n[ui\n", ":2:4: not valid TOML: expected ']' at the end of a table declaration"),
    ('color = "never"\ncolor = "always"\n', ":2:17: not valid TOML: cannot overwrite a value"),
    ('pretty = "yes"\n', ":1: pretty must be true or false, not \"yes\""),
    ('color = "blue"\n', ":1: color must be one of auto, always, never, not \"blue\""),
    ("color = true\n", ":1: color must be a string, not true"),
    ('timestamps = "local"\n', ":1: timestamps must be one of absolute, relative, off, not \"local\""),
    ('events = "only:"\n', ":1: events = \"only:\": only needs names: only:NAME[,NAME...]"),
    ('events = "some:X"\n', ":1: events = \"some:X\": 'some:X' is not all, only:NAME[,NAME...] or hide:NAME[,NAME...]"),
    ("history-size = -1\n", ":1: history-size = -1: cannot be negative"),
    ("history-size = 99999999999999999999\n", ":1: history-size = 99999999999999999999: too large: at most "
                                               "9223372036854775807"),
    ('history-size = "100"\n', ":1: history-size must be a whole number, not \"100\""),
    ("history-size = 1.5\n", ":1: history-size must be a whole number, not 1.5"),
    ("history-size = true\n", ":1: history-size must be a whole number, not true"),
    ('editing-mode = "vim"\n', ":1: editing-mode must be one of emacs, vi, not \"vim\""),
    ("\n\ncolors = \"never\"\n", ":3: unknown key 'colors' (did you mean color?)"),
    ('color = "never"\ncolour = "always"\n', ":2: colour sets color again"),
    ("pretty = true\n[ui]\nvi = true\n", ":2: unknown key 'ui' (known keys: pretty, color, events, timestamps, "
                                         "history-size, editing-mode)"),
    ("pretty = [true]\n", ":1: pretty must be true or false, not an array"),
]


@pytest.mark.parametrize("text, error", BROKEN)
def test_a_broken_file_is_one_line_naming_the_line(monkeypatch, capsys, text, error):
    path = write_config(text)
    assert parsed(monkeypatch) == cli.ExitStatus.USAGE
    err = capsys.readouterr().err
    assert err == f"qmpsh: {path}{error}\n"


def test_unreadable_files(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("QMPSH_CONFIG", str(tmp_path / "missing.toml"))
    assert parsed(monkeypatch) == cli.ExitStatus.USAGE
    assert capsys.readouterr().err == f"qmpsh: {tmp_path}/missing.toml: no such config file (named by QMPSH_CONFIG)\n"
    monkeypatch.setenv("QMPSH_CONFIG", str(tmp_path))
    assert parsed(monkeypatch) == cli.ExitStatus.USAGE
    assert capsys.readouterr().err == f"qmpsh: {tmp_path}: cannot read the config file: Is a directory\n"
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'# ok\ncolor = "n\xe9ver"\n')
    monkeypatch.setenv("QMPSH_CONFIG", str(latin1))
    assert parsed(monkeypatch) == cli.ExitStatus.USAGE
    assert capsys.readouterr().err == f"qmpsh: {latin1}:2: not UTF-8 text\n"


def test_a_missing_default_file_is_fine(monkeypatch):
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "qmpsh" / "config.toml").exists()
    args = parsed(monkeypatch)
    assert not isinstance(args, int)
    assert vars(args) == {**cli.DEFAULTS, "address": "/nonexistent/qmp.sock", "files": []}


@pytest.mark.parametrize("own", [[], ["q.sock"], ["q.sock", "a.qmp", "-"], ["-"], [""]])
def test_a_command_line_of_only_words_reads_as_the_parser_reads_it(own):
    """ADDRESS and FILEs without a config file skip argparse: the same options as the parser's."""
    plain = cli._plain_arguments(own)
    assert plain is not None
    assert vars(plain) == vars(cli.build_parser().parse_args(own))


def test_an_option_or_a_config_file_takes_the_parser(monkeypatch, tmp_path):
    assert cli._plain_arguments(["-p", "q.sock"]) is None
    assert cli._plain_arguments(["q.sock", "--", "x"]) is None  # main takes QEMU's arguments off first
    write_config("pretty = true\n")
    assert cli._plain_arguments(["q.sock"]) is None
    monkeypatch.setenv("QMPSH_CONFIG", str(tmp_path / "missing.toml"))  # named: its absence is an error to report
    assert cli._plain_arguments(["q.sock"]) is None
    monkeypatch.setenv("QMPSH_CONFIG", "")  # set but empty: no config file
    assert cli._plain_arguments(["q.sock"]) is not None


def test_the_defaults_are_the_parsers_every_options():
    dests = {action.dest for action in cli.build_parser()._actions if action.option_strings}
    assert set(cli.DEFAULTS) == dests - {"help", "version"}


def test_every_key_is_an_option_of_the_same_name():
    longs = {option for action in cli.build_parser()._actions for option in action.option_strings}
    assert {f"--{key}" for key in config.KEYS} <= longs


def test_timeout_zero_or_inf_waits_forever_for_replies(monkeypatch):
    for given in ("0", "inf", "Infinity"):
        assert cli._reply_timeout(parsed(monkeypatch, "--timeout", given).timeout, interactive=False) is None
    assert cli._reply_timeout(2.5, interactive=False) == 2.5
    assert cli._reply_timeout(None, interactive=False) == cli.SCRIPT_TIMEOUT
    assert cli._reply_timeout(None, interactive=True) is None
