"""Keeping the session at a real terminal (pty + pyte): Ctrl-C during a slow reply,
two sessions sharing one history file, a history location that cannot be written,
a status toolbar whose query-status keeps failing, hostile input and hostile event times.

The history tests run against real QEMU. The others use the fake QMP server
(``tests/fakeqmp.py``): a real QEMU cannot be made to answer a given command
three seconds late, or to fail query-status on demand.
"""

from __future__ import annotations

import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.history import FileHistory

from tests.conftest import history_path
from tests.fakeqmp import FakeQMPServer, delay, encode, error, raw, reply
from tests.interactive.ptyterm import CTRL_C, CTRL_D, ENTER, PROMPT, UP, Terminal, parse_row

# query-migrate: a command qmpsh itself never sends (its status bar polls query-status and query-jobs).
SLOW_COMMAND = "query-migrate"
SLOW = {"return": {"status": "slow-reply-from-the-server"}}
FAST = {"return": {"name": "fast-reply-of-its-own"}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeQMPServer]:
    with FakeQMPServer(tmp_path / "qmp.sock") as fake:
        yield fake


def lines_with(term: Terminal, text: str) -> list[int]:
    return [i for i, line in enumerate(term.plain().split("\n")) if text in line]


# ---------------------------------------------------------------------------
# Ctrl-C while waiting for a slow reply


def submit(term, command: str) -> None:
    """Type ``command``, press Enter, and wait until the prompt has gone (the command is running)."""
    term.send(command)
    term.wait_prompt(command)
    row = term.screen.cursor.y
    term.send(ENTER)
    term.wait_for(lambda: term.screen.cursor.y > row and not term.cursor_row.startswith(PROMPT.strip()),
                  f"{command} to be sent")


def test_ctrl_c_stops_waiting_and_the_late_reply_is_shown_as_late(server, terminal):
    server.when(SLOW_COMMAND, delay(3), reply(SLOW), times=1)
    server.when("query-name", reply(FAST))
    term = terminal(str(server.path))

    submit(term, SLOW_COMMAND)
    term.pump(0.3)  # qmpsh is waiting for the reply now
    assert "slow-reply" not in term.plain(), term.dump()

    started = time.monotonic()
    term.send(CTRL_C)
    term.wait_text("interrupted", timeout=2)
    term.wait_prompt(timeout=2)
    stopped_after = time.monotonic() - started
    assert stopped_after < 1.5, f"Ctrl-C took {stopped_after:.1f} s to stop waiting\n{term.dump()}"
    assert "slow-reply" not in term.plain(), term.dump()  # the reply has not come yet

    # The next command goes out before the late reply arrives; the server answers in order.
    term.send("query-name" + ENTER)
    term.wait_text("fast-reply-of-its-own", timeout=10)
    term.wait_prompt()
    term.pump(0.3)

    text = term.plain()
    assert "Traceback" not in text, text
    notes = lines_with(term, "late reply to")
    assert len(notes) == 1, text
    lines = text.split("\n")
    assert f"late reply to {SLOW_COMMAND}" in lines[notes[0]], text
    slow = lines_with(term, "slow-reply-from-the-server")
    fast = lines_with(term, "fast-reply-of-its-own")
    assert len(slow) == 1 and len(fast) == 1, text
    # The late reply sits right under its note, and query-name's reply is its own, after it.
    assert slow[0] == notes[0] + 1, text
    assert fast[0] > slow[0], text
    assert "late reply to query-name" not in text, text
    assert "error" not in text, text

    # Still a working shell, and the late reply is not handed to a later command either.
    term.run("query-name", "fast-reply-of-its-own")
    assert term.plain().count("slow-reply-from-the-server") == 1, term.dump()
    term.send(CTRL_D)
    assert term.wait_exit() == 0, term.dump()


def test_ctrl_c_twice_then_both_late_replies(server, terminal):
    """Two abandoned commands: each late reply is named after its own command."""
    server.when(SLOW_COMMAND, delay(1.5), reply(SLOW), times=1)
    server.when("query-uuid", delay(1.5), reply({"return": {"UUID": "late-uuid"}}), times=1)
    term = terminal(str(server.path))
    for command in (SLOW_COMMAND, "query-uuid"):
        submit(term, command)
        term.pump(0.2)
        term.send(CTRL_C)
        term.wait_prompt(timeout=2)
    term.wait_text("late-uuid", timeout=10)
    term.wait_prompt()
    text = term.plain()
    lines = text.split("\n")
    status_note = lines_with(term, f"late reply to {SLOW_COMMAND}")
    uuid_note = lines_with(term, "late reply to query-uuid")
    assert len(status_note) == 1 and len(uuid_note) == 1, text
    assert "slow-reply-from-the-server" in lines[status_note[0] + 1], text
    assert "late-uuid" in lines[uuid_note[0] + 1], text


# ---------------------------------------------------------------------------
# History


def read_entries(path: Path) -> list[str]:
    """The history file's entries, checking that every line is well formed."""
    entries: list[list[str]] = []
    for line in path.read_text().split("\n"):
        if line.startswith("# "):
            entries.append([])
        elif line.startswith("+"):
            assert entries, f"an entry line before any entry header: {line!r}"
            entries[-1].append(line[1:])
        else:
            assert line == "", f"a broken line in the history file: {line!r}"
    return ["\n".join(lines) for lines in entries]


def add_bitmap(name: str) -> str:
    """A real command whose reply is {"return": {}}, different for every name."""
    return f"block-dirty-bitmap-add node=node-A name={name}"


def test_two_sessions_share_one_history_file(qemu_factory, terminal):
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])  # one client per QMP monitor: two monitors
    count = 12
    first = terminal(vm.socket)
    second = terminal(str(vm.dir / "qmp2.sock"))
    expected: list[str] = []
    for i in range(count):
        lines = {first: add_bitmap(f"first-{i}-{'a' * 40}"), second: add_bitmap(f"second-{i}-{'b' * 40}")}
        for term, line in lines.items():
            term.wait_prompt()
            term.send(line + ENTER)  # both sessions store their entries at the same moment
        replies = i + 1
        for term in lines:
            term.wait_for(lambda t=term, n=replies: t.plain().count('{"return": {}}') >= n, f"reply {replies}")
        expected += lines.values()
    # A multi-line entry from each, pasted.
    for name, term in (("first", first), ("second", second)):
        term.wait_prompt()
        pasted = (f'{{\n    "execute": "block-dirty-bitmap-add",\n'
                  f'    "arguments": {{"node": "node-A", "name": "{name}-multi"}}\n}}')
        term.paste(pasted + "\n")
        expected.append(pasted)
    for term in (first, second):
        term.wait_for(lambda t=term: t.plain().count('{"return": {}}') >= count + 1, "the pasted request's reply")
        term.wait_prompt()
        term.send(CTRL_D)
    for term in (first, second):
        assert term.wait_exit() == 0, term.dump()

    path = history_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = read_entries(path)
    assert sorted(entries) == sorted(expected), path.read_text()
    # prompt_toolkit reads it back the same way.
    assert sorted(FileHistory(str(path)).load_history_strings()) == sorted(expected)

    # A third session finds the last entry of the file under Up.
    third = terminal(vm.socket)
    third.send(UP)
    last = entries[-1]
    third.wait_for(lambda: last.split("\n")[-1] in third.rows[third.screen.cursor.y], "the last entry under Up")


def test_unwritable_history_location_warns_once_and_goes_on(tmp_path, monkeypatch, qemu, terminal):
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory\n")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "state"))
    term = terminal(qemu.socket)
    for n in range(3):
        term.run(add_bitmap(f"bm{n}"), '{"return": {}}')
    text = term.plain()
    assert text.count("history not saved") == 1, text
    warning = next(line for line in text.split("\n") if "history not saved" in line)
    assert str(blocker / "state" / "qmpsh") in warning and "Not a directory" in warning, warning
    assert "Traceback" not in text
    # The session still has its history in memory.
    term.send(UP)
    term.wait_prompt(add_bitmap("bm2"))
    term.send("\x15" + CTRL_D)  # clear the line, leave
    assert term.wait_exit() == 0, term.dump()
    assert blocker.read_text() == "not a directory\n"


def test_history_file_that_stops_being_writable_warns_once(qemu, terminal):
    term = terminal(qemu.socket)
    term.run(add_bitmap("bm0"), '{"return": {}}')
    path = history_path()
    assert add_bitmap("bm0") in path.read_text()
    path.unlink()
    path.mkdir()  # where the file was: writes now fail with EISDIR
    for n in range(1, 4):
        term.run(add_bitmap(f"bm{n}"), '{"return": {}}')
    text = term.plain()
    assert text.count("history not saved") == 1, text
    warning = next(line for line in text.split("\n") if "history not saved" in line)
    assert "Is a directory" in warning, warning
    assert text.count('{"return": {}}') == 4, text
    term.send(CTRL_D)
    assert term.wait_exit() == 0, term.dump()


# ---------------------------------------------------------------------------
# the status toolbar's polling


def test_failing_query_status_is_asked_less_and_less_often(server, terminal):
    """A server that answers query-status with an error: asked after 1, 2, 4 ... s, not every second."""
    server.when("query-status", error("GenericError", "not now"))
    term = terminal(str(server.path))
    term.wait_prompt()
    started = time.monotonic()
    time.sleep(4.5)  # every second: about 5 asks; backing off: at 0, 1 and 3 s
    term.run("query-version", '"return"')
    asked = [r for r in server.requests if isinstance(r, dict) and r.get("execute") == "query-status"]
    elapsed = time.monotonic() - started
    assert 2 <= len(asked) <= 3, f"{len(asked)} query-status in {elapsed:.1f} s"


def test_a_new_connection_asks_for_the_run_state_at_once(server, terminal):
    """After failures pushed the next query-status 4 s away, /reconnect asks on the new connection at once."""
    server.when("query-status", error("GenericError", "not now"), times=3)  # asked at 0, 1 and 3 s
    server.answers["query-status"] = {"return": {"status": "running", "singlestep": False, "running": True}}

    def asked() -> int:
        return sum(1 for r in server.requests if isinstance(r, dict) and r.get("execute") == "query-status")

    term = terminal(str(server.path))
    term.wait_prompt()
    term.wait_for(lambda: asked() == 3, "three failed query-status", timeout=6)
    term.run("/reconnect", "connected to")
    term.wait_for(lambda: asked() == 4, "query-status on the new connection", timeout=2)


# ---------------------------------------------------------------------------
# Hostile input, hostile event times


def test_input_python_cannot_convert_is_an_error_and_the_shell_goes_on(qemu, terminal):
    """An integer of more digits than Python converts, a key thousands of levels deep: each was a
    traceback ("Unhandled exception in event loop" under Enter); now an error, and nothing sent."""
    term = terminal(qemu.socket)
    digits = sys.get_int_max_str_digits() + 1
    for line, message in [(f"qom-set path=/machine property=x value={'9' * digits}", "integer too long"),
                          ("qom-set path=/machine property=x " + ".".join(["a"] * 3000) + "=1",
                           "key nested too deeply"),
                          ("/wait SHUTDOWN " + ".".join(["a"] * 3000) + "=1", "key nested too deeply")]:
        term.wait_prompt()
        term.paste(line + "\n")
        term.wait_text(message)
        term.wait_prompt()
    term.run("query-status", '"prelaunch"')
    text = term.plain()
    assert "Traceback" not in text and "Unhandled exception" not in text, term.dump()
    term.send(CTRL_D)
    assert term.wait_exit() == 0, term.dump()
    assert qemu.alive()


def test_a_byte_that_is_not_utf8_at_the_prompt_is_refused_and_kept_in_the_history(server, terminal):
    """Saving the line to the history raised "Unhandled exception in event loop"."""
    term = terminal(str(server.path))
    term.child.send(b"query-name a=x\xffy" + ENTER.encode())
    term.wait_text("error: column 15: byte \\xff is not UTF-8")
    term.wait_prompt()
    assert "Unhandled exception" not in term.plain() and "Traceback" not in term.plain(), term.dump()
    assert b"+query-name a=x\xffy\n" in history_path().read_bytes()
    assert not [r for r in server.requests if isinstance(r, dict) and r.get("execute") == "query-name"]


def test_event_times_that_are_no_times_print_as_given(server, terminal):
    """A timestamp a server made up ("abc", 1e300, NaN, a list) dropped the connection at a terminal."""
    stamps = [{"seconds": "abc", "microseconds": 0}, {"seconds": 1e300, "microseconds": 0},
              {"seconds": float("nan"), "microseconds": 0}, {"seconds": [1], "microseconds": 0}, "abc", [1, 2]]
    odd = b"".join(encode({"event": f"ODD_{i}", "data": {}, "timestamp": stamp}) for i, stamp in enumerate(stamps))
    server.when("query-name", raw(odd), reply({"return": {"name": "after-the-odd-events"}}))
    term = terminal(str(server.path))
    term.run("query-name", "after-the-odd-events")
    term.run("query-uuid", '"return"')  # still connected
    text = term.plain()
    assert "connection to QEMU lost" not in text and "Traceback" not in text, term.dump()
    for i, stamp in enumerate(stamps):
        (row,) = [line for line in text.split("\n") if f'"ODD_{i}"' in line]
        shown = parse_row(row)["timestamp"]
        assert shown == stamp or (isinstance(stamp, dict) and shown == {**stamp, "seconds": "NaN"}), row
