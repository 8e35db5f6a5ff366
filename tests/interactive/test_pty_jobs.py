"""Watching block jobs at a real terminal (pty + pyte): /job's progress bar, /jobs, /tree,
Ctrl-C during /job, --timestamps and the status toolbar.

The data is set up first with scripted qmpsh (16 MiB in node-A, then the
document's chain [A] <- [B] <- [C] <- [D]), so that a stream limited to a few
MiB/s runs for seconds; then qmpsh is started in a pty on the same QEMU.
"""

from __future__ import annotations

import itertools
import json
import re
import time

import pytest

from tests.conftest import GUEST_DISK, Qemu, qemu_io_write, run_qmpsh, snapshot_sync
from tests.interactive.ptyterm import CTRL_C, ENTER, PROMPT, Terminal, parse_row
from tests.monitor import Monitor, qmp


DEVICE = GUEST_DISK
BAR_REMNANTS = ("━", "╺", "╸", "MiB/s", "-:--:--", "?/s")


write, snapshot = qemu_io_write, snapshot_sync


def prepare(vm: Qemu, layers: str = "ABCD") -> None:
    """16 MiB of data in node-A, then snapshots up to the last of ``layers``."""
    script = write(0x11, 0, 16) + "".join(snapshot(b, t) for b, t in itertools.pairwise(layers))
    result = run_qmpsh(vm.socket, stdin=script, timeout=30)
    assert result.returncode == 0, result.stderr


def events_qmp(vm: Qemu, *commands: str) -> None:
    """Run commands on the QEMU's second monitor (as another client would)."""
    with Monitor(vm.dir / "qmp2.sock") as monitor:
        for command in commands:
            monitor.ok(command)


def rows_after(term: Terminal, line: str) -> list[str]:
    """The screen rows after the last row reading ``(QEMU) line``, up to the cursor's row."""
    rows = term.rows
    at = max(i for i, row in enumerate(rows) if row == PROMPT + line)
    return rows[at + 1:term.screen.cursor.y]


EVENT_ROW = re.compile(r"\[\d\d:\d\d:\d\d\.\d{3}\] \{")


def events_in(rows: list[str]) -> list[dict]:
    """The events printed on ``rows`` (each one a time and JSON, maybe wrapped over rows); nothing else."""
    lines: list[str] = []
    for row in rows:
        if EVENT_ROW.match(row):
            lines.append(row)
        else:
            assert lines, f"not an event: {row!r} in {rows}"
            lines[-1] += row
    return [parse_row(line) for line in lines]


def last_reply(term: Terminal) -> dict:
    """The last reply written (whole, however the screen wrapped it)."""
    line = [line for line in term.plain().splitlines() if '{"return"' in line][-1]
    return json.loads(line[line.index('{"return"'):])


def table_cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"[│┃]", row)[1:-1]]


def assert_no_bar(term: Terminal) -> None:
    leftovers = [row for row in term.rows if any(mark in row for mark in BAR_REMNANTS)]
    assert not leftovers, f"progress bar remnants: {leftovers}\n{term.dump()}"


# ---------------------------------------------------------------------------
# /job: the bar draws, then leaves only the final event and the prompt


BAR = re.compile(r"^job0 stream running .*\s(\d+)%\s+[\d.]+/[\d.]+ MiB")


def test_job_progress_bar_draws_and_finishes_cleanly(qemu_factory, terminal):
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])
    prepare(vm)
    term = terminal(vm.socket)
    term.run("block-stream device=node-D job-id=job0 speed=8M", '{"return": {}}')
    term.send("/job job0")
    term.wait_prompt("/job job0")
    term.send(ENTER)
    drawn: list[int] = []  # the percentages the bar showed, in order

    def finished() -> bool:
        bar = [BAR.match(row) for row in term.rows]
        for match in filter(None, bar):
            if not drawn or int(match.group(1)) != drawn[-1]:
                drawn.append(int(match.group(1)))
        return (term.rows_with(PROMPT + "/job job0") != [term.screen.cursor.y]
                and term.cursor_row == PROMPT.rstrip() and term.screen.cursor.x == len(PROMPT))

    term.wait_for(finished, "/job to draw its bar and end at a new prompt", timeout=15)
    assert len(drawn) >= 3 and drawn == sorted(drawn) and drawn[-1] > drawn[0], (drawn, term.dump())
    # The final event goes through the prompt's output thread: it may land above the prompt a moment later.
    term.wait_for(lambda: any("BLOCK_JOB_COMPLETED" in row for row in rows_after(term, "/job job0"))
                  and term.cursor_row == PROMPT.rstrip(), "the final event above the prompt")
    assert [row for row in term.rows if row.startswith(PROMPT.strip())][-2:] == [
        PROMPT + "/job job0", PROMPT.rstrip()], term.dump()

    # Between the /job line and the prompt: the job's events as they came, the final one once, nothing else
    # (the last status changes may arrive once the bar is gone).
    after = events_in(rows_after(term, "/job job0"))
    assert [(e["event"], e["data"].get("status")) for e in after] in (
        [("JOB_STATUS_CHANGE", "waiting"), ("JOB_STATUS_CHANGE", "pending"), ("BLOCK_JOB_COMPLETED", None),
         *tail] for tail in ([], [("JOB_STATUS_CHANGE", "concluded")],
                             [("JOB_STATUS_CHANGE", "concluded"), ("JOB_STATUS_CHANGE", "null")])), term.dump()
    (event,) = [e for e in after if e["event"] == "BLOCK_JOB_COMPLETED"]
    assert event["data"]["device"] == "job0" and event["data"]["offset"] == event["data"]["len"], term.dump()
    assert "error" not in event["data"]
    assert_no_bar(term)
    assert all(not row for row in term.rows[term.screen.cursor.y + 1:]), term.dump()

    # Events keep printing above the prompt afterwards.
    events_qmp(vm, "cont", "stop")

    def above_prompt() -> bool:
        rows = rows_after(term, "/job job0")
        return (any('"RESUME"' in row for row in rows) and any('"STOP"' in row for row in rows)
                and term.cursor_row == PROMPT.rstrip())

    term.wait_for(above_prompt, "RESUME and STOP above the prompt")
    assert [e["event"] for e in events_in(rows_after(term, "/job job0"))][-2:] == ["RESUME", "STOP"], term.dump()
    assert_no_bar(term)
    term.run("query-status", '"paused"')


BACKUP_BAR = re.compile(r"^job0 backup (running|paused) .*\s(\d+)%")


def job_events(rows: list[str]) -> list[tuple[str, str]]:
    """(event, status or type) of each event on ``rows``."""
    return [(e["event"], e["data"].get("status", e["data"].get("type"))) for e in events_in(rows)]


def test_job_prints_the_jobs_events_above_its_bar(qemu_factory, terminal):
    """The document's job0 used again: a stream ends, then a backup reuses job0. /job follows the
    backup (the stream's end does not end it); the backup's events print above the bar as they come,
    each once, and /events lists every one of them."""
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])
    prepare(vm)
    term = terminal(vm.socket)
    term.run("block-stream device=node-C base-node=node-A job-id=job0", '{"return": {}}')
    term.wait_for(lambda: '"null"' in term.plain(), "the stream's end")
    term.run("drive-backup device=node-D sync=full target=e.qcow2 job-id=job0 speed=8M", '{"return": {}}')
    term.send("/job job0" + ENTER)
    term.wait_for(lambda: any(BACKUP_BAR.match(row) for row in term.rows), "the backup's progress bar")
    with Monitor(vm.dir / "qmp2.sock") as other:
        other.ok("block-job-pause", device="job0")

        def paused_above_the_bar() -> bool:
            rows = [*rows_after(term, "/job job0"), term.cursor_row]
            bar = [i for i, row in enumerate(rows) if BACKUP_BAR.match(row)]
            paused = [i for i, row in enumerate(rows) if '"paused"' in row]
            return bool(bar and paused and paused[-1] < bar[-1] and "job0 backup paused" in rows[bar[-1]])

        term.wait_for(paused_above_the_bar, "the paused status above the bar, and in it")
        other.ok("block-job-resume", device="job0")
        other.ok("block-job-set-speed", device="job0", speed=0)  # the rest at once
    term.wait_for(lambda: term.cursor_row == PROMPT.rstrip() and '"null"' in "".join(rows_after(term, "/job job0")),
                  "/job to end, and the job's last events")
    assert_no_bar(term)
    shown = job_events(rows_after(term, "/job job0"))
    assert shown == [("JOB_STATUS_CHANGE", "paused"), ("JOB_STATUS_CHANGE", "running"),
                     ("JOB_STATUS_CHANGE", "waiting"), ("JOB_STATUS_CHANGE", "pending"),
                     ("BLOCK_JOB_COMPLETED", "backup"), ("JOB_STATUS_CHANGE", "concluded"),
                     ("JOB_STATUS_CHANGE", "null")], term.dump()
    term.run("/events", "events kept")
    listed = [parse_row(line) for line in term.plain().split(PROMPT + "/events")[-1].splitlines()
              if EVENT_ROW.match(line)]
    assert [(e["event"], e["data"].get("status", e["data"].get("type"))) for e in listed][-len(shown):] == shown


def test_job_after_completion_shows_the_end_not_a_stale_ready(qemu, terminal):
    """Watched without /wait: the mirror got ready, was completed, then /job is asked about it."""
    term = terminal(qemu.socket)
    term.run("drive-mirror device=node-A target=m.qcow2 format=qcow2 sync=full job-id=job0", '{"return": {}}')
    term.wait_text("BLOCK_JOB_READY")
    term.run("block-job-complete device=job0", '{"return": {}}')
    term.wait_text("BLOCK_JOB_COMPLETED")
    term.wait_prompt()
    term.run("/job job0", "BLOCK_JOB_COMPLETED")
    (event,) = events_in(rows_after(term, "/job job0"))
    assert event["event"] == "BLOCK_JOB_COMPLETED" and event["data"]["device"] == "job0", term.dump()
    assert "is ready" not in term.plain(), term.dump()


# ---------------------------------------------------------------------------
# /jobs and /tree at the terminal


TREE_BEFORE = [
    f"{DEVICE}  block-backend",
    "└── root:  node-D  qcow2  d.qcow2",
    "    └── backing:  node-C  qcow2  c.qcow2",
    "        └── backing:  node-B  qcow2  b.qcow2",
    "            └── backing:  node-A  qcow2  a.qcow2",
    "  chain: [node-A] <- [node-B] <- [node-C] <- [node-D]",
]
TREE_AFTER = [
    f"{DEVICE}  block-backend",
    "└── root:  node-D  qcow2  d.qcow2",
    "node-A  qcow2  a.qcow2",
]


def test_jobs_table_and_tree_at_the_terminal(qemu, terminal):
    prepare(qemu)
    term = terminal(qemu.socket)
    term.run("/tree", "chain: [node-A]")
    assert rows_after(term, "/tree") == TREE_BEFORE, term.dump()

    term.run("block-stream device=node-D job-id=job0 speed=8M", '{"return": {}}')
    term.run("/jobs", "┘")
    table = rows_after(term, "/jobs")
    header = next(row for row in table if "id" in row and "speed" in row)
    assert table_cells(header) == ["id", "type", "status", "progress", "speed"], term.dump()
    (row,) = [row for row in table if "job0" in row]
    cells = table_cells(row)
    assert cells[:3] == ["job0", "stream", "running"] and cells[4] == "8.0 MiB/s", term.dump()  # as /job says it
    assert re.fullmatch(r"\d+(\.\d)?%", cells[3]), term.dump()

    # While it runs: the stream's copy-on-read filter sits on top, and the chain is still A..D.
    term.run("/tree", "chain: [node-A]")
    during = rows_after(term, "/tree")
    assert re.fullmatch(r"└── root:  #block\d+  copy-on-read  d\.qcow2", during[1]), term.dump()
    assert during[:1] + during[2:] == [
        f"{DEVICE}  block-backend",
        "    └── file:  node-D  qcow2  d.qcow2",
        "        └── backing:  node-C  qcow2  c.qcow2",
        "            └── backing:  node-B  qcow2  b.qcow2",
        "                └── backing:  node-A  qcow2  a.qcow2",
        "  chain: [node-A] <- [node-B] <- [node-C] <- [node-D]",
    ], term.dump()

    term.run("block-job-pause device=job0", '{"return": {}}')
    term.run("block-job-set-speed device=job0 speed=0", '{"return": {}}')
    before = len(term.plain())
    term.run("/jobs", "┘")
    (row,) = [row for row in term.plain()[before:].splitlines() if "job0" in row]
    assert table_cells(row)[4] == "unlimited", term.dump()
    term.run("block-job-resume device=job0", '{"return": {}}')
    # Unlimited now, it ends at once: its end printed, /job then says it again as its answer.
    term.wait_for(lambda: "BLOCK_JOB_COMPLETED" in term.plain(), "the job to end")

    term.run("/job job0", "BLOCK_JOB_COMPLETED")
    term.run("/jobs", "no jobs")
    assert rows_after(term, "/jobs") == ["no jobs"], term.dump()
    term.run("/tree", "node-A  qcow2")
    assert rows_after(term, "/tree") == TREE_AFTER, term.dump()


# ---------------------------------------------------------------------------
# Ctrl-C during /job stops the waiting, not the job


def test_ctrl_c_during_job_stops_waiting_not_the_job(qemu, terminal):
    prepare(qemu, "AB")
    term = terminal(qemu.socket)
    term.run("block-stream device=node-B job-id=job0 speed=2M", '{"return": {}}')
    term.send("/job job0")
    term.wait_prompt("/job job0")
    term.send(ENTER)
    term.wait_for(lambda: any(BAR.match(row) for row in term.rows), "the progress bar")
    started = time.monotonic()
    term.send(CTRL_C)
    term.wait_text("interrupted", timeout=5)
    term.wait_prompt(timeout=5)
    assert time.monotonic() - started < 2, term.dump()
    assert_no_bar(term)
    assert rows_after(term, "/job job0") == ["interrupted"], term.dump()

    term.run("query-block-jobs", '"device": "job0"')
    (job,) = last_reply(term)["return"]
    assert job["device"] == "job0" and job["status"] == "running" and 0 < job["offset"] < job["len"], job
    assert "CANCELLED" not in term.plain() and "COMPLETED" not in term.plain(), term.dump()
    # It goes on and can be followed again.
    term.run("block-job-set-speed device=job0 speed=0", '{"return": {}}')
    term.run("/job job0", "BLOCK_JOB_COMPLETED")
    assert '"error"' not in term.plain(), term.dump()


# ---------------------------------------------------------------------------
# --timestamps


@pytest.mark.parametrize("mode", ["absolute", "relative", "off"])
def test_timestamps_option_changes_the_event_prefix(qemu_factory, terminal, mode):
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])
    term = terminal(vm.socket, "--timestamps", mode)
    term.run("query-status", '"prelaunch"')  # relative times count from the last command sent
    time.sleep(1.0)
    events_qmp(vm, "cont")
    term.wait_for(lambda: term.rows_with('"RESUME"'), "the RESUME event")
    (row,) = [term.rows[i] for i in term.rows_with('"RESUME"')]
    if mode == "absolute":
        assert re.fullmatch(r'\[\d\d:\d\d:\d\d\.\d{3}\] \{"event": "RESUME"\}', row), term.dump()
    elif mode == "relative":
        match = re.fullmatch(r'\[\+(\d+\.\d{3})s\] \{"event": "RESUME"\}', row)
        assert match and 0.9 <= float(match.group(1)) < 5, term.dump()
    else:
        assert re.fullmatch(r'\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "RESUME"\}', row), (
            term.dump())


# ---------------------------------------------------------------------------
# the status toolbar


def toolbar(term: Terminal) -> str:
    """The bottom row: prompt_toolkit draws the toolbar there when the terminal answers CPR."""
    return term.rows[-1]


def test_status_toolbar(qemu_factory):
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])
    prepare(vm, "AB")
    qemu = qmp(vm.dir / "qmp2.sock", "query-version")["return"]["qemu"]
    expected = f" connected │ QEMU {qemu['major']}.{qemu['minor']}.{qemu['micro']} │ VM "
    term = Terminal(vm.socket, cpr=True)
    try:
        term.wait_prompt()
        term.wait_for(lambda: toolbar(term) == expected + "prelaunch", "the toolbar, VM prelaunch")
        term.run("cont", '{"return": {}}')
        term.wait_for(lambda: toolbar(term) == expected + "running", "the toolbar, VM running")
        term.run("stop", '{"return": {}}')
        term.wait_for(lambda: toolbar(term) == expected + "paused", "the toolbar, VM paused")

        term.run("block-stream device=node-B job-id=job0 speed=4M", '{"return": {}}')
        shown: list[int] = []

        def job_progress() -> bool:
            match = re.fullmatch(re.escape(expected + "paused") + r" │ job0 stream running (\d+)%", toolbar(term))
            if match and (not shown or int(match.group(1)) != shown[-1]):
                shown.append(int(match.group(1)))
            return len(shown) >= 2

        term.wait_for(job_progress, "the running job and its growing percentage in the toolbar")
        assert shown == sorted(shown), shown
        assert term.cursor_row == PROMPT.rstrip(), term.dump()  # the prompt stays usable meanwhile
        term.run("block-job-cancel device=job0", '{"return": {}}')
        term.wait_for(lambda: toolbar(term) == expected + "paused", "the job to leave the toolbar")
    finally:
        term.close()


def test_status_toolbar_on_a_storage_daemon(storage_daemon, tmp_path):
    """qemu-storage-daemon has no VM and no query-status: the toolbar shows none and stops asking."""
    (version,) = [json.loads(line) for line in run_qmpsh(storage_daemon.socket, stdin="query-version\n")
                  .stdout.splitlines()]
    qemu = version["return"]["qemu"]
    expected = f" connected │ QEMU {qemu['major']}.{qemu['minor']}.{qemu['micro']}"
    log = tmp_path / "wire.log"
    term = Terminal(storage_daemon.socket, "-l", str(log), cpr=True)
    try:
        term.wait_prompt()
        term.wait_for(lambda: toolbar(term) == expected, "the toolbar without a VM state")
        time.sleep(3.5)  # the toolbar's poll runs once a second
        term.run("query-block", '{"return": []}')
        term.wait_for(lambda: toolbar(term) == expected,
                      "the toolbar redrawn after the reply, still without a VM state")
    finally:
        term.close()
    asked = [line for line in log.read_text().splitlines()
             if json.loads(line)["direction"] == "sent"
             and json.loads(line)["message"].get("execute") == "query-status"]
    assert len(asked) == 1, asked
