"""The config file's interactive keys at a real terminal: vi editing mode and the history size."""

from __future__ import annotations

import time


from tests.conftest import history_path, write_config
from tests.interactive.ptyterm import CTRL_D, ENTER, PROMPT, UP


ESC = "\x1b"


def vi_edit(term) -> None:
    """Type a line with a stray word in front, then remove it with vi keys: Esc 0 dw."""
    term.send("oops query-status")
    term.wait_prompt("oops query-status")
    term.send(ESC)
    time.sleep(0.6)  # past prompt_toolkit's wait for a longer escape sequence
    term.send("0dw")


def test_vi_editing_mode_from_the_config_file(qemu, terminal):
    write_config('editing-mode = "vi"\n')
    term = terminal(qemu.socket)
    vi_edit(term)
    term.wait_for(lambda: term.cursor_row == PROMPT + "query-status", "vi's 0dw to delete the first word")
    term.send(ENTER)
    term.wait_text('"prelaunch"')


def test_editing_mode_option_wins_over_the_file(qemu, terminal):
    write_config('editing-mode = "vi"\n')
    term = terminal(qemu.socket, "--editing-mode", "emacs")
    vi_edit(term)  # emacs keys: Esc 0 d is no "delete word", the stray word stays
    term.wait_for(lambda: term.cursor_row.endswith("w"), "emacs to take the keys")
    assert term.cursor_row.startswith(PROMPT + "oops query-status"), term.dump()


def test_history_size_keeps_the_newest_entries(qemu, terminal):
    history_path().parent.mkdir(parents=True, exist_ok=True)
    history_path().write_text("".join(f"\n# 2024-01-01 00:00:0{i}\n+query-name-{i}\n" for i in range(5)))
    term = terminal(qemu.socket, "--history-size", "2")
    # Trimmed when the session starts: the two newest entries are left.
    assert history_path().read_text() == "".join(f"\n# 2024-01-01 00:00:0{i}\n+query-name-{i}\n" for i in (3, 4))
    term.send(UP)
    term.wait_prompt("query-name-4")
    term.send(UP)
    term.wait_prompt("query-name-3")
    term.send(UP)  # nothing older was loaded
    time.sleep(0.2)
    term.wait_prompt("query-name-3")


def test_history_size_zero_keeps_no_history(qemu, terminal):
    write_config("history-size = 0\n")
    term = terminal(qemu.socket)
    term.run("query-status", '"prelaunch"')
    term.send(UP)
    time.sleep(0.2)
    term.wait_prompt("")
    term.send(CTRL_D)
    assert term.wait_exit() == 0
    assert not history_path().exists() or "query-status" not in history_path().read_text()
