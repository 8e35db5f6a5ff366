"""What /save and --record write for a line (offline)."""

from __future__ import annotations

import json

import pytest

from qmpsh.client import SocketTransport
from qmpsh.record import Recorder, builtin_line, command_line, header
from qmpsh.syntax import Builtin, Request


@pytest.mark.parametrize("message, line", [
    ({"execute": "query-status", "arguments": {}}, "query-status"),
    ({"execute": "query-status"}, "query-status"),
    ({"execute": "block-stream", "arguments": {"device": "node-D", "speed": 8388608}},
     "block-stream device=node-D speed=8388608"),
    ({"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "n", "file": {"driver": "file"}}},
     'blockdev-add driver=qcow2 node-name=n file={"driver":"file"}'),
    ({"execute": "human-monitor-command", "arguments": {"command-line": "info block"}},
     'human-monitor-command command-line="info block"'),
    ({"execute": "qom-set", "arguments": {"path": "/machine", "property": "x", "value": "true"}},
     'qom-set path=/machine property=x value="true"'),  # the string, not the boolean
])
def test_key_value_where_it_reads_back_exactly(message, line):
    assert command_line(message) == line


@pytest.mark.parametrize("message", [
    {"execute": "x", "arguments": {"a b": 1}},  # a key with a space
    {"execute": "x", "arguments": {"k=v": 1}},  # a key with "="
    {"exec-oob": "migrate-pause"},
    {"execute": "x", "arguments": {}, "control": {"run-oob": True}},
])
def test_json_otherwise(message):
    line = command_line(message)
    assert json.loads(line) == message


def test_builtin_lines():
    assert builtin_line(Builtin("wait", ("BLOCK_JOB_READY",), {"device": "job0", "timeout": 30})) \
        == "/wait BLOCK_JOB_READY device=job0 timeout=30"
    assert builtin_line(Builtin("job", ("job0",))) == "/job job0"
    assert builtin_line(Builtin("shell", text="qemu-img create -f qcow2 e.qcow2 1G")) \
        == "/shell qemu-img create -f qcow2 e.qcow2 1G"


def test_only_what_succeeded_and_what_a_rerun_needs():
    recorder = Recorder()
    stop = Request({"execute": "stop", "arguments": {}, "id": "mine"}, "json")
    recorder.on_answered(stop, {"return": {}, "id": "qmpsh-1"})
    recorder.on_answered(Request({"execute": "cont", "arguments": {}}, "kv"), {"error": {"class": "X", "desc": ""}})
    recorder.on_builtin_done(Builtin("wait", ("STOP",)), True)
    recorder.on_builtin_done(Builtin("job", ("job0",)), False)
    recorder.on_builtin_done(Builtin("tree"), True)
    assert recorder.lines == ["stop", "/wait STOP"]


def test_lines_sent_unchecked_are_saved_to_be_sent_unchecked_again():
    forced = Request({"execute": "x-experimental", "arguments": {"a": "1"}}, "kv", force=True)
    plain = Request({"execute": "stop", "arguments": {}}, "kv")
    checked, unchecked = Recorder(), Recorder(checked=False)  # --no-schema
    for recorder in checked, unchecked:
        recorder.on_answered(forced, {"return": {}})
        recorder.on_answered(plain, {"return": {}})
    assert checked.lines == ['!x-experimental a="1"', "stop"]  # the string, as sent
    assert unchecked.lines == ['!x-experimental a="1"', "!stop"]


def test_the_header_says_how_to_run_it_again():
    first, second = header(SocketTransport("/run/vm1.sock"))
    assert first.startswith("# qmpsh session, ") and first.endswith(": QEMU at /run/vm1.sock")
    assert second == "# run it again: qmpsh ADDRESS < THIS-FILE (exit status 0 when every line succeeds)"


def test_a_write_that_fails_is_said_once_and_kept_for_the_exit_status(tmp_path):
    said: list[str] = []
    recorder = Recorder(str(tmp_path / "r.qmp"), warn=said.append)
    recorder.begin(SocketTransport("/run/vm1.sock"))
    recorder._sink = open("/dev/full", "w")  # noqa: SIM115 - what a full disk does to the file
    recorder.on_answered(Request({"execute": "stop", "arguments": {}}, "kv"), {"return": {}})
    recorder.on_answered(Request({"execute": "cont", "arguments": {}}, "kv"), {"return": {}})
    recorder.close()
    assert said == [f"cannot write {tmp_path / 'r.qmp'}: No space left on device (nothing more is recorded there)"]
    assert recorder.error is not None and recorder.lines == ["stop", "cont"]  # /save still has them
