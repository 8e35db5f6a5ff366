"""``qmpsh --replay LOG ADDRESS``: a session's -l log sent again to a fresh QEMU, checked against it.

The document's drive-mirror with pivot is recorded once through scripted qmpsh with ``-l``; the
replay waits for BLOCK_JOB_READY before block-job-complete as the session did, and leaves the same
chain and data. Against a QEMU whose disk has another node name, it stops at the first reply that
differs and exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import qemu_img, run_qmpsh, seed_args
from tests.integration.test_export import mirror_with_pivot, same_pivot
from tests.integration.test_seed_flows import Script, stopped


def sent_and_received(log: Path) -> list[str]:
    """The log as "sent COMMAND" and "received EVENT" entries, in order."""
    entries = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        message = entry["message"]
        if entry["direction"] == "sent" and "execute" in message:
            entries.append(f"sent {message['execute']}")
        elif "event" in message:
            entries.append(f"received {message['event']}")
    return entries


def record(qemu_factory, workdir: Path, script: Script, log: Path) -> None:
    workdir.mkdir()
    vm = qemu_factory(workdir=workdir)
    outcome = run_qmpsh("-l", str(log), vm.socket, stdin=script.text, timeout=90)
    assert outcome.returncode == 0, outcome.stderr
    if vm.alive():
        vm.stop()


def test_a_replay_waits_for_the_events_the_session_saw_and_does_the_same(qemu_factory, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    log, again = tmp_path / "session.log", tmp_path / "replay.log"
    record(qemu_factory, first, mirror_with_pivot(), log)
    second.mkdir()
    fresh = qemu_factory(workdir=second)
    replayed = run_qmpsh("--replay", str(log), "-l", str(again), fresh.socket, timeout=90)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stderr == "", replayed.stderr
    stopped(fresh)
    wire = sent_and_received(again)
    assert wire.index("received BLOCK_JOB_READY") < wire.index("sent block-job-complete"), wire
    same_pivot(first, second)


def test_a_replay_stops_at_the_first_reply_that_differs(qemu_factory, tmp_path):
    log = tmp_path / "session.log"
    record(qemu_factory, tmp_path / "first", Script().chain("ABC"), log)
    other = tmp_path / "other"
    other.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "39M", cwd=other)
    elsewhere = qemu_factory(seed_args(node="node-X"), workdir=other)
    replayed = run_qmpsh("--replay", str(log), elsewhere.socket)
    assert replayed.returncode == 1, replayed.stderr
    first_snapshot = next(i for i, line in enumerate(log.read_text().splitlines(), 1)
                          if json.loads(line)["message"].get("execute") == "blockdev-snapshot-sync")
    assert replayed.stderr.splitlines()[-1] == (
        f"error: {log}:{first_snapshot}: blockdev-snapshot-sync: error GenericError, recorded return; "
        "replay stopped"), replayed.stderr
    replies = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert "error" in replies[-1] and len(replies) == 2, replies  # the HMP write, the snapshot: nothing after


def test_an_error_that_was_recorded_and_comes_again_is_no_difference(qemu, tmp_path):
    log = tmp_path / "session.log"
    recorded = run_qmpsh("-l", str(log), qemu.socket, stdin="block-job-cancel device=nojob\nquery-status\n")
    assert recorded.returncode == 1
    replayed = run_qmpsh("--replay", str(log), qemu.socket)
    assert replayed.returncode == 0, replayed.stderr
    assert [next(iter(json.loads(line))) for line in replayed.stdout.splitlines()] == ["error", "return"]


def test_a_log_that_is_not_one_is_named_with_its_line(qemu, tmp_path):
    log = tmp_path / "notes.txt"
    log.write_text('{"time": "t", "direction": "sent", "message": {"execute": "stop", "id": "qmpsh-1"}}\nhello\n')
    replayed = run_qmpsh("--replay", str(log), qemu.socket)
    assert replayed.returncode == 2
    assert replayed.stderr == f"qmpsh: {log}:2: not a qmpsh -l log line (Expecting value: line 1 column 1 (char 0))\n"


def test_an_event_that_does_not_come_stops_the_replay(qemu, tmp_path):
    """The recorded session saw BLOCK_JOB_READY before query-status; this QEMU runs no job."""
    log = tmp_path / "session.log"
    entries = [{"direction": "sent", "message": {"execute": "query-name", "id": "qmpsh-1"}},
               {"direction": "received", "message": {"return": {}, "id": "qmpsh-1"}},
               {"direction": "received", "message": {"event": "BLOCK_JOB_READY", "data": {"device": "job0"}}},
               {"direction": "sent", "message": {"execute": "query-status", "id": "qmpsh-2"}}]
    log.write_text("".join(json.dumps({"time": "2026-12-07T12:00:00+00:00", **e}) + "\n" for e in entries))
    replayed = run_qmpsh("--timeout", "1", "--replay", str(log), qemu.socket)
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stderr.splitlines() == ["error: /wait: no BLOCK_JOB_READY device=job0 within 1 s",
                                            f"error: {log}:4: replay stopped before query-status"]
    assert [json.loads(line) for line in replayed.stdout.splitlines()] == [{"return": {}}]  # query-name only
