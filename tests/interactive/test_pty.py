"""qmpsh at a real terminal: a pty (pexpect) read through a terminal emulator (pyte).

Each test starts ``python -m qmpsh SOCKET`` against a real QEMU, types keys
and reads the emulated screen where layout matters (what sits above the
prompt, what the prompt row shows). Output is also kept as plain text (ANSI
sequences removed) to count replies even after they scroll off the screen.
"""

from __future__ import annotations

import re
import stat
import time

import pytest

from tests.conftest import Qemu, history_path
from tests.interactive.ptyterm import CTRL_C, CTRL_D, ENTER, PROMPT, TAB, TIMEOUT, UP, Terminal, parse_row
from tests.monitor import qmp


# ---------------------------------------------------------------------------
# 1. events above the prompt


def test_event_appears_above_half_typed_line(qemu_factory, terminal):
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])
    term = terminal(vm.socket)
    term.send("query-sta")
    term.wait_prompt("query-sta")

    assert qmp(vm.dir / "qmp2.sock", "cont") == {"return": {}}

    def event_above_prompt() -> bool:
        events = term.rows_with("RESUME")
        return bool(events) and events[0] < term.screen.cursor.y and term.cursor_row == PROMPT + "query-sta"

    term.wait_for(event_above_prompt, "the RESUME event above the prompt")
    rows = term.rows
    event_row = term.rows_with("RESUME")
    assert len(event_row) == 1, term.dump()
    event = parse_row(rows[event_row[0]])
    assert event["event"] == "RESUME", term.dump()
    assert re.match(r"\[\d\d:\d\d:\d\d\.\d{3}\] \{", rows[event_row[0]]), term.dump()  # its time leads
    assert PROMPT.strip() not in rows[event_row[0]], term.dump()
    # The half-typed line survives, once, with the cursor at its end.
    assert term.cursor_row == PROMPT + "query-sta" and term.screen.cursor.x == len(PROMPT + "query-sta"), term.dump()
    assert [i for i, row in enumerate(rows) if row.startswith(PROMPT.strip())] == [term.screen.cursor.y], term.dump()

    term.send("tus" + ENTER)
    term.wait_text('"status": "running"')
    term.wait_prompt()
    assert term.rows_with(PROMPT + "query-status"), term.dump()
    reply_row = term.rows_with('"status": "running"')[0]
    assert parse_row(term.rows[reply_row])["return"]["status"] == "running"
    assert event_row[0] < reply_row


# ---------------------------------------------------------------------------
# 2. history


def test_history_persists_across_runs(qemu, terminal):
    history = history_path()
    first = terminal(qemu.socket)
    first.run("query-status", '"prelaunch"')
    first.send(CTRL_D)
    assert first.wait_exit() == 0, first.dump()

    assert history.is_file(), f"no history file at {history}"
    assert "query-status" in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

    second = terminal(qemu.socket)
    second.send(UP)
    second.wait_prompt("query-status")
    second.send(ENTER)
    second.wait_text('"prelaunch"')
    second.wait_prompt()


# ---------------------------------------------------------------------------
# 3. multi-line input


def ran_once(term: Terminal) -> None:
    """query-status ran exactly once and nothing failed (a later command's reply shows all has arrived)."""
    term.wait_text('"prelaunch"')
    term.wait_prompt()
    term.run("query-uuid", '"UUID"')
    assert term.plain().count('"prelaunch"') == 1, term.dump()
    assert "error" not in term.plain(), term.dump()


@pytest.mark.parametrize("newline", ["\n", "\r"], ids=["LF", "CR"])  # terminals paste line ends as CR
def test_bracketed_paste_of_multiline_json_runs_once(qemu, terminal, newline):
    term = terminal(qemu.socket)
    term.paste('{\n    "execute": "query-status"\n}\n'.replace("\n", newline))
    ran_once(term)


def test_bracketed_paste_of_doc_block_runs_once(qemu, terminal):
    term = terminal(qemu.socket)
    term.paste('(QEMU) query-status\n{\n    "execute": "query-status",\n    "arguments": {}\n}\n')
    ran_once(term)
    assert term.rows_with("skipped JSON form"), term.dump()


def test_typed_multiline_json_continues_then_runs_once(qemu, terminal):
    term = terminal(qemu.socket)
    term.send('{"execute":')
    term.wait_prompt('{"execute":')
    first = term.screen.cursor.y
    term.send(ENTER)
    term.wait_for(lambda: term.screen.cursor.y == first + 1 and term.cursor_row == "..."
                  and term.screen.cursor.x == len(PROMPT), "a continuation prompt")
    output = term.plain()
    term.send('"query-status"}')
    term.wait_for(lambda: term.cursor_row == '...    "query-status"}', "the second line typed")
    # Nothing was sent or printed for the first line.
    assert "return" not in output and "error" not in output, term.dump()
    assert term.rows[first] == PROMPT + '{"execute":', term.dump()

    term.send(ENTER)
    ran_once(term)


# ---------------------------------------------------------------------------
# 4. Ctrl-C, Ctrl-D, quit, lost connection


def test_ctrl_c_clears_the_half_typed_line(qemu, terminal):
    term = terminal(qemu.socket)
    term.send("query-sta")
    term.wait_prompt("query-sta")
    term.send(CTRL_C)
    term.wait_prompt()
    assert term.child.isalive(), term.dump()
    # The next line starts empty: query-status runs as typed.
    term.run("query-status", '"prelaunch"')
    assert "error" not in term.plain(), term.dump()


def test_ctrl_c_interrupts_wait(qemu, terminal):
    term = terminal(qemu.socket)
    line = "/wait SHUTDOWN timeout=30"
    for attempt in (1, 2):  # a second Ctrl-C must work as the first did
        term.send(line)
        term.wait_prompt(line)
        row = term.screen.cursor.y
        notes = term.plain().count("interrupted")
        term.send(ENTER)
        # The line was accepted: the cursor leaves it and no new prompt is drawn.
        term.wait_for(lambda row=row: term.screen.cursor.y > row and not term.cursor_row.startswith(PROMPT.strip()),
                      f"the /wait to start (attempt {attempt})")
        term.pump(0.3)  # let qmpsh install its Ctrl-C handler for the running line
        assert term.child.isalive(), term.dump()

        started = time.monotonic()
        term.send(CTRL_C)
        term.wait_for(lambda notes=notes: term.plain().count("interrupted") > notes,
                      f"an 'interrupted' note (attempt {attempt})", 5)
        term.wait_prompt(timeout=5)
        elapsed = time.monotonic() - started
        assert elapsed < 2, f"Ctrl-C took {elapsed:.1f} s to end the /wait\n{term.dump()}"
        assert term.child.isalive(), term.dump()
    assert "/wait: no SHUTDOWN" not in term.plain(), term.dump()
    term.run("query-status", '"prelaunch"')


def test_ctrl_d_on_empty_line_exits_0(qemu, terminal):
    term = terminal(qemu.socket)
    term.send(CTRL_D)
    assert term.wait_exit() == 0, term.dump()
    assert qemu.alive()


def test_quit_exits_0_and_qemu_exits(qemu, terminal):
    term = terminal(qemu.socket)
    term.send("quit" + ENTER)
    assert term.wait_exit() == 0, term.dump()
    assert qemu.process.wait(timeout=TIMEOUT) is not None
    assert "connection to QEMU lost" not in term.plain(), term.dump()
    assert "Traceback" not in term.plain(), term.plain()


def test_qemu_killed_at_prompt_keeps_the_prompt_then_exits_3(qemu: Qemu, terminal):
    term = terminal(qemu.socket)
    term.wait_prompt()
    qemu.kill()
    term.wait_text("connection to QEMU lost")
    term.wait_prompt()
    term.run("query-status", "not connected to QEMU: /reconnect first")
    for line in ("/wait SHUTDOWN timeout=30", "/job job0", "/jobs"):  # each says so at once, none waits
        started = time.monotonic()
        term.run(line, f"error: {line.split()[0]}: not connected to QEMU: /reconnect first")
        assert time.monotonic() - started < 5, term.dump()
    term.send(CTRL_D)
    status = term.wait_exit()
    text = term.plain()
    assert status == 3, term.dump()
    assert text.count("connection to QEMU lost") == 1, text
    lines = [line for line in text.splitlines() if "connection to QEMU lost" in line]
    # One line: what happened, why (the server hung up or reset the socket), what to do.
    assert re.search(r"error: connection to QEMU lost: "
                     r"(the server closed the connection|the server reset the connection); "
                     r"/reconnect to try again$", lines[0]), text
    assert "Traceback" not in text, text


def test_qemu_killed_during_wait_ends_it_at_once(qemu: Qemu, terminal):
    term = terminal(qemu.socket)
    line = "/wait SHUTDOWN timeout=30"
    term.send(line)
    term.wait_prompt(line)
    row = term.screen.cursor.y
    term.send(ENTER)
    term.wait_for(lambda: term.screen.cursor.y > row and not term.cursor_row.startswith(PROMPT.strip()),
                  "the /wait to start")
    qemu.kill()
    killed = time.monotonic()
    term.wait_text("connection to QEMU lost")
    term.wait_prompt()
    assert time.monotonic() - killed < 5, term.dump()
    lost = [row for row in term.rows if "connection to QEMU lost" in row]
    assert len(lost) == 1 and lost[0].endswith("; /reconnect to try again"), term.dump()
    assert "/wait: no SHUTDOWN" not in term.plain(), term.dump()


# ---------------------------------------------------------------------------
# 5. completion


def test_tab_completes_command_names(qemu, terminal):
    term = terminal(qemu.socket)
    term.send("query-stat")
    term.wait_prompt("query-stat")
    term.send(TAB)
    # The menu lists query-status below the prompt row.
    term.wait_for(lambda: any(i > term.screen.cursor.y and row.strip() == "query-status"
                              for i, row in enumerate(term.rows)), "query-status in the completion menu")
    term.send(CTRL_C)
    term.wait_prompt()

    term.send("query-statu")
    term.wait_prompt("query-statu")
    term.send(TAB)
    term.wait_prompt("query-status")
    term.send(ENTER)
    term.wait_text('"prelaunch"')
    term.wait_prompt()

    term.send("/he")
    term.wait_prompt("/he")
    term.send(TAB)
    term.wait_prompt("/help")


# ---------------------------------------------------------------------------
# 6. transaction


def test_transaction_continuation_prompt(qemu, terminal):
    term = terminal(qemu.socket)
    term.send("transaction(")
    term.wait_prompt("transaction(")
    row = term.screen.cursor.y
    term.send(ENTER)
    term.wait_for(lambda: term.screen.cursor.y == row + 1 and term.cursor_row == "TRANS>"
                  and term.screen.cursor.x == len("TRANS> "), "the TRANS> continuation prompt")
    assert "return" not in term.plain(), term.dump()
    term.send(")" + ENTER)
    term.wait_text('{"return": {}}')
    term.wait_prompt()
    assert term.rows[row + 1] == "TRANS> )", term.dump()

    # With an action: it is part of the one transaction sent.
    term.send("transaction(" + ENTER)
    term.wait_for(lambda: term.cursor_row == "TRANS>", "the TRANS> continuation prompt")
    term.send("block-dirty-bitmap-add node=node-A name=bm0" + ENTER)
    term.wait_for(lambda: term.cursor_row == "TRANS>" and term.rows[term.screen.cursor.y - 1]
                  == "TRANS> block-dirty-bitmap-add node=node-A name=bm0", "a second TRANS> line")
    term.send(")" + ENTER)
    term.wait_for(lambda: term.plain().count('{"return": {}}') == 2, "the transaction's reply")
    term.wait_prompt()
    term.run("block-dirty-bitmap-add node=node-A name=bm0", "Bitmap already exists")


# ---------------------------------------------------------------------------
# 7. checking before sending


def lines_after(term: Terminal, line: str) -> list[str]:
    """The screen's lines after the last ``(QEMU) line`` up to the cursor, wrapped rows joined."""
    rows = term.rows
    at = max(i for i, row in enumerate(rows) if row == PROMPT + line)
    lines: list[str] = []
    wrapped = False
    for row in rows[at + 1:term.screen.cursor.y]:
        if wrapped:
            lines[-1] += row
        else:
            lines.append(row)
        wrapped = len(row) == term.screen.columns
    return lines


def test_mistyped_lines_and_waits_are_caught_at_the_prompt(qemu, terminal):
    term = terminal(qemu.socket)
    term.run("query-stauts", "^")
    assert lines_after(term, "query-stauts") == [
        "error: column 1: unknown command 'query-stauts' (did you mean 'query-stats' or 'query-status' or "
        "'query-blockstats'?) (a leading ! sends it anyway)", "  query-stauts", "  ^"], term.dump()
    term.run("block-stream", "^")
    assert lines_after(term, "block-stream") == [
        "error: column 13: missing required argument 'device' (a leading ! sends it anyway)", "  block-stream",
        "              ^"], term.dump()
    assert "CommandNotFound" not in term.plain() and "return" not in term.plain(), term.dump()
    term.run("/wait BLOCK_JOB_COMPLETE", "error")  # at once: no 60 s wait for an event QEMU never sends
    assert lines_after(term, "/wait BLOCK_JOB_COMPLETE") == [
        "error: /wait: unknown event 'BLOCK_JOB_COMPLETE' (did you mean 'BLOCK_JOB_COMPLETED' or "
        "'BLOCK_JOB_CANCELLED' or 'BLOCK_JOB_PENDING'?)"], term.dump()
    term.run("/wait BLOCK_JOB_COMPLETED devce=job0", "error")
    assert lines_after(term, "/wait BLOCK_JOB_COMPLETED devce=job0") == [
        "error: /wait: BLOCK_JOB_COMPLETED has no data key 'devce' (did you mean 'device'?)"], term.dump()
    term.run("query-status", '"prelaunch"')
