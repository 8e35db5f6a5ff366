"""Reading a -l log back as the user's steps, and the Python program made of them (offline)."""

from __future__ import annotations

import ast
import json

import pytest

from qmpsh.export import python_program
from qmpsh.transcript import Expected, TranscriptError, expected, read


def entry(direction: str, message: dict) -> str:
    return json.dumps({"time": "2026-12-07T12:00:00.000000+00:00", "direction": direction, "message": message})


def job_event(status: str) -> dict:
    return {"event": "JOB_STATUS_CHANGE", "data": {"status": status, "id": "job0"}, "timestamp": {"seconds": 1}}


READY = {"event": "BLOCK_JOB_READY", "timestamp": {"seconds": 2},
         "data": {"device": "job0", "len": 10, "offset": 10, "speed": 0, "type": "mirror"}}

LOG = [
    entry("sent", {"execute": "qmp_capabilities", "id": "__qmp#00000"}),
    entry("received", {"return": {}, "id": "__qmp#00000"}),
    entry("received", {"event": "RESUME", "data": {}}),  # before the first command: nothing waits for it
    entry("sent", {"execute": "drive-mirror", "id": 1,
                   "arguments": {"device": "node-D", "target": "e.qcow2", "sync": "full", "job-id": "job0"}}),
    entry("received", job_event("created")),
    entry("received", {"return": {}, "id": 1}),
    entry("sent", {"execute": "query-jobs", "id": "__qmp#00001"}),  # the toolbar's: not the user's
    entry("received", {"return": [], "id": "__qmp#00001"}),
    entry("received", job_event("running")),
    entry("received", job_event("ready")),
    entry("received", READY),
    entry("sent", {"execute": "block-job-complete", "arguments": {"device": "job0"}, "id": 2}),
    entry("received", {"error": {"class": "GenericError", "desc": "no"}, "id": 2}),
    entry("sent", {"execute": "quit", "id": 3}),
]


def test_the_users_commands_with_the_events_seen_before_each_and_their_replies():
    steps = read(LOG)
    assert [s.command for s in steps] == [
        {"execute": "drive-mirror", "arguments": {"device": "node-D", "target": "e.qcow2", "sync": "full",
                                                  "job-id": "job0"}},
        {"execute": "block-job-complete", "arguments": {"device": "job0"}},
        {"execute": "quit"}]
    assert steps[0].before == []
    # A job's statuses on the way are not waited for, only the last it reached; progress never.
    assert steps[1].before == [Expected("JOB_STATUS_CHANGE", {"id": "job0", "status": "ready"}),
                               Expected("BLOCK_JOB_READY", {"device": "job0", "type": "mirror"})]
    assert steps[2].before == []
    assert [s.reply for s in steps] == [{"return": {}}, {"error": {"class": "GenericError", "desc": "no"}}, None]
    assert [s.lineno for s in steps] == [4, 12, 14]


def test_a_log_written_before_ids_were_numbers_reads_the_same():
    """Until Dec 2026 qmpsh's ids were "qmpsh-N" strings; logs kept from then still replay."""
    legacy = [line.replace('"id": 1,', '"id": "qmpsh-1",').replace('"id": 1}', '"id": "qmpsh-1"}')
              .replace('"id": 2}', '"id": "qmpsh-2"}').replace('"id": 3}', '"id": "qmpsh-3"}') for line in LOG]
    assert legacy != LOG and "qmpsh-3" in legacy[-1]
    assert read(legacy) == read(LOG)


def test_an_expected_event_is_named_by_what_identifies_it():
    assert str(expected(READY)) == 'BLOCK_JOB_READY device="job0" type="mirror"'


def test_a_log_of_two_runs_is_refused_where_the_second_begins():
    """-l appends: a second run's command 1 would replay its quit and its events as one session."""
    second = [entry("sent", {"execute": "query-status", "id": 1})]
    with pytest.raises(TranscriptError) as raised:
        read(LOG + second, "session.log")
    assert str(raised.value) == (f"session.log:{len(LOG) + 1}: another qmpsh run starts here (-l appends to a log): "
                                 "keep one run in the file")


@pytest.mark.parametrize("line, why", [
    ("not json", "not a qmpsh -l log line (Expecting value"),
    ('{"time": "x", "direction": "up", "message": {}}', "not a qmpsh -l log line (no direction and message)"),
    ("[1, 2]", "not a qmpsh -l log line (no direction and message)"),
])
def test_a_line_that_is_no_log_entry_is_named_by_file_and_line(line, why):
    with pytest.raises(TranscriptError) as raised:
        read([LOG[0], line], "session.log")
    assert str(raised.value).startswith(f"session.log:2: {why}")


def test_the_program_runs_the_steps_in_order_and_is_valid_python():
    program = python_program(read(LOG), "session.log")
    compile(program, "replay.py", "exec")
    calls = [line.strip() for line in program.splitlines() if line.startswith("    await ")]
    assert calls[0].startswith("await qmp.execute('drive-mirror', {'device': 'node-D'")
    assert calls[1:] == [
        "await events.expect('JOB_STATUS_CHANGE', {'id': 'job0', 'status': 'ready'})",
        "await events.expect('BLOCK_JOB_READY', {'device': 'job0', 'type': 'mirror'})",
        "await qmp.execute('block-job-complete', {'device': 'job0'})",
        "await qmp.execute('quit')"]
    assert "session.log" in program.split('"""')[1]


def test_what_the_log_holds_cannot_break_out_of_the_program():
    odd = [entry("sent", {"execute": "x'); import os; os.system('true'); ('", "id": 1}),
           entry("received", {"event": 'E"""', "data": {"id": "\\N{"}})]
    odd.append(entry("sent", {"execute": "stop", "id": 2}))
    program = python_program(read(odd), 'a"""b\\N{.log')
    calls = [node.func for node in ast.walk(ast.parse(program)) if isinstance(node, ast.Call)]
    assert not any(isinstance(f, ast.Attribute) and f.attr == "system" for f in calls)  # only inside a string


def test_what_qmpclient_cannot_send_as_it_was_is_refused():
    oob = [entry("sent", {"exec-oob": "migrate-pause", "id": 1})]
    with pytest.raises(TranscriptError) as raised:
        python_program(read(oob, "s.log"), "s.log")
    assert str(raised.value).startswith("s.log:1: QMPClient.execute cannot send this as it was sent: ")
