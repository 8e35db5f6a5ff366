"""Live-value completion at a real terminal: Tab after ``block-stream device=`` lists the node names.

qmpsh runs in a pty (``Terminal`` from test_pty) against a real QEMU; the
chain grows by typed ``blockdev-snapshot-sync`` lines, so the names on screen
come from the background catalog, refreshed after those commands. With QEMU
frozen (SIGSTOP) typing and Tab still answer at once, from the cache.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.interactive.ptyterm import CTRL_C, ENTER, PROMPT, TAB, Terminal


SNAPSHOTS = [
    "blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
    "blockdev-snapshot-sync node-name=node-B snapshot-file=c.qcow2 snapshot-node-name=node-C format=qcow2",
]
REPLY = '{"return": {}}'


def menu(term: Terminal) -> list[str]:
    """The rows below the prompt row: where the completion menu opens."""
    return [row.strip() for row in term.rows[term.screen.cursor.y + 1:] if row.strip()]


def menu_has(term: Terminal, names: list[str]) -> bool:
    rows = menu(term)
    return all(any(row.split()[0] == name for row in rows) for name in names)


def type_and_tab(term: Terminal, text: str, names: list[str], attempts: int = 5) -> float:
    """Type ``text`` and Tab until the menu lists ``names``; the seconds the last attempt took.

    The catalog refreshes in the background after each command, so the very
    first Tab may come before the refresh: then the line is cleared and typed
    again (an open menu is not recomputed when the cache changes).
    """
    for attempt in range(attempts):
        term.wait_prompt()
        started = time.monotonic()
        term.send(text)
        term.wait_for(lambda: term.cursor_row.startswith((term.prompt + text).rstrip()), f"{text!r} on the prompt row")
        term.send(TAB)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            term.pump()
            if menu_has(term, names):
                return time.monotonic() - started
        if attempt < attempts - 1:
            term.send(CTRL_C)
    pytest.fail(f"the completion menu for {text!r} never listed {names}\n{term.dump()}")


def tab_writes(term: Terminal, text: str, word: str, attempts: int = 5) -> None:
    """Type ``text`` and Tab until Tab writes ``word``, the only candidate, after it (retried as in type_and_tab)."""
    for _ in range(attempts):
        term.wait_prompt()
        term.send(text + TAB)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            term.pump()
            if term.cursor_row == term.prompt + text + word and not menu(term):
                return
        term.send(CTRL_C)
    pytest.fail(f"Tab after {text!r} never wrote {word!r}\n{term.dump()}")


def test_tab_lists_live_node_names(qemu, terminal):
    term = terminal(qemu.socket)
    type_and_tab(term, "block-stream device=", ["node-A", "file"])
    term.send(CTRL_C)

    for line in SNAPSHOTS:
        term.run(line, REPLY)
    type_and_tab(term, "block-stream device=", ["node-A", "node-B", "node-C"])
    rows = menu(term)
    assert any(row.split()[0] == "node-B" and "block node" in row for row in rows), term.dump()
    term.send(CTRL_C)

    # A prefix narrows the menu to the nodes it starts; Tab then Enter runs what was chosen.
    type_and_tab(term, "block-stream device=node-", ["node-A", "node-B", "node-C"])
    assert not menu_has(term, ["file"]), term.dump()
    term.send(CTRL_C)
    term.wait_prompt()
    term.send("block-dirty-bitmap-add node=node-C name=bm0" + ENTER)
    term.wait_for(lambda: term.plain().count(REPLY) == len(SNAPSHOTS) + 1, "the bitmap's reply")
    tab_writes(term, "block-dirty-bitmap-remove node=node-C name=", "bm0")  # the only bitmap
    term.send(CTRL_C)

    # QEMU frozen: typing and Tab still answer from the cache, at once.
    os.kill(qemu.process.pid, signal.SIGSTOP)
    try:
        term.wait_prompt()
        for text in ("block-commit device=node-C top=", "block-stream device=node-"):
            names = ["a.qcow2", "b.qcow2", "c.qcow2"] if "top=" in text else ["node-A", "node-B", "node-C"]
            took = type_and_tab(term, text, names, attempts=1)
            assert took < 1.0, f"typing and Tab took {took:.2f} s with QEMU stopped\n{term.dump()}"
            term.send(CTRL_C)
        term.wait_prompt()
        started = time.monotonic()
        term.send("query-sta")
        term.wait_prompt("query-sta")
        assert time.monotonic() - started < 1.0, term.dump()
        term.send(CTRL_C)
    finally:
        os.kill(qemu.process.pid, signal.SIGCONT)
    term.run("query-status", '"prelaunch"')
    assert "Traceback" not in term.plain(), term.plain()


def test_tab_after_wait_lists_event_names_then_their_data_keys(qemu, terminal):
    term = terminal(qemu.socket)
    type_and_tab(term, "/wait BLOCK_JOB_C", ["BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED"])
    assert all(row.split()[0].startswith("BLOCK_JOB_C") for row in menu(term)), term.dump()
    term.send(CTRL_C)
    type_and_tab(term, "/wait BLOCK_JOB_COMPLETED ", ["error=", "device=", "offset="])
    term.send(CTRL_C)
    term.wait_prompt()
    term.send("/wait JOB_STATUS_CHANGE st")  # the only key that starts so: Tab writes it out
    term.wait_prompt("/wait JOB_STATUS_CHANGE st")
    term.send(TAB)
    term.wait_prompt("/wait JOB_STATUS_CHANGE status=")
    term.send(CTRL_C)


def test_tab_writes_the_only_candidate_at_once_even_amid_fast_keys(qemu, terminal):
    term = terminal(qemu.socket)
    # At a person's pace the menu opens while typing; Tab writes the one name that starts so and closes it.
    term.send("query-statu")
    term.wait_for(lambda: menu_has(term, ["query-status"]), "the menu while typing")
    term.send(TAB)
    term.wait_prompt("query-status")
    term.wait_for(lambda: not menu(term), "the menu to close")
    term.send(CTRL_C)

    # In one write, as from a fast typist: each Tab writes its word before the keys after it land.
    term.wait_prompt()
    term.send("block-dirty-bitmap-add no" + TAB + "node-A na" + TAB + "bm0" + ENTER)
    term.wait_for(lambda: REPLY in term.plain(), "the reply to the completed line")
    assert PROMPT + "block-dirty-bitmap-add node=node-A name=bm0" in term.rows, term.dump()

    # Several candidates: Tab writes what they share and offers them, those starting so before the fuzzy ones.
    term.wait_prompt()
    term.send("query-sta" + TAB)
    term.wait_prompt("query-stat")
    term.wait_for(lambda: [row.split()[0] for row in menu(term)][:3] == ["query-stats", "query-stats-schemas",
                                                                         "query-status"], "the query-stat menu")
    term.send(CTRL_C)
    for pause in (False, True):  # Tab in the same write, or once the menu is open from typing
        term.wait_prompt()
        term.send("block-s" + ("" if pause else TAB))
        term.wait_for(lambda: len(menu(term)) > 3, "the block-s menu")
        if pause:
            term.send(TAB)
        term.wait_for(lambda: [row.split()[0] for row in menu(term)][:2] == ["block-set-write-threshold",
                                                                             "block-stream"], "prefix matches first")
        names = [row.split()[0] for row in menu(term)]
        assert not [n for n in names[2:] if n.startswith("block-s")] and "blockdev-snapshot" in names, term.dump()
        term.wait_prompt("block-s")  # offered, none picked
        term.send(TAB)  # Tab again goes into the menu
        term.wait_prompt("block-set-write-threshold")
        term.send(CTRL_C)


def test_hmp_mode_tab_completes_commands_info_subcommands_and_block_devices(qemu, terminal):
    term = terminal(qemu.socket, "-H")
    type_and_tab(term, "info bl", ["block", "block-jobs", "blockstats"])
    term.wait_prompt("info block")  # what they share
    term.send(CTRL_C)
    tab_writes(term, "block_resi", "ze")
    term.send(CTRL_C)
    type_and_tab(term, "eject -f ", ["node-A", "file"])
    assert menu(term)[0].split() == ["node-A", "root", "of", "virtio0"], term.dump()
    term.send(CTRL_C)
    term.wait_prompt()
    term.send("info block n" + TAB + ENTER)  # in one write: Tab writes node-A before Enter runs the line
    term.wait_text("node-A: a.qcow2 (qcow2)")
    assert term.prompt + "info block node-A" in term.rows, term.dump()
