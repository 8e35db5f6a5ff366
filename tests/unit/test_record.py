"""What /save and --record write for a line (offline)."""

from __future__ import annotations

import json

import pytest

from qmpsh.record import Recorder, builtin_line, command_line
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
