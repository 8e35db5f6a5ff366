"""The history file at a real terminal, where it is not what qmpsh expects: readable by others,
not a regular file, or to be made under umask 000. Real QEMU, real pty."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import history_path
from tests.interactive.ptyterm import CTRL_D, UP


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_history_file_readable_by_others_is_made_private(qemu, terminal):
    path = history_path()
    path.parent.mkdir(parents=True)
    path.write_text("\n# 2024-01-01 00:00:00\n+query-name\n")
    path.chmod(0o644)
    term = terminal(qemu.socket)
    assert mode(path) == 0o600
    term.send(UP)  # and it is the same history
    term.wait_prompt("query-name")


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_history_that_is_no_regular_file_is_a_note_and_history_in_memory(qemu, terminal, kind):
    """A FIFO hung qmpsh before its prompt (open waits for a reader); /dev/zero was read forever."""
    path = history_path()
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.symlink_to(kind)
    term = terminal(qemu.socket)
    term.wait_text(f"history not saved: cannot write {path}: not a regular file")
    term.run("query-name", '{"return": {}}')
    term.send(UP)
    term.wait_prompt("query-name")
    term.send("\x15" + CTRL_D)  # clear the line, leave
    assert term.wait_exit() == 0, term.dump()
    assert "Traceback" not in term.plain()


def test_directories_made_under_umask_000_are_private(qemu, terminal, tmp_path, monkeypatch):
    state = tmp_path / "made" / "under" / "umask-000"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    old = os.umask(0)
    try:
        term = terminal(qemu.socket)  # the umask is inherited when the pty's child starts
    finally:
        os.umask(old)
    term.run("query-name", '{"return": {}}')
    made = [tmp_path / "made", tmp_path / "made" / "under", state, state / "qmpsh"]
    assert {str(d): oct(mode(d)) for d in made} == {str(d): "0o700" for d in made}
    assert mode(state / "qmpsh" / "history") == 0o600
