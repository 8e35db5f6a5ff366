"""Only strict JSON reaches QEMU, against real QEMU.

QEMU's JSON parser refuses NaN and Infinity, lone surrogates and duplicate keys. It answers such a
message with errors that carry no id (it could not read one), and, where it stopped half-way, runs
what it can make of the rest. A line that would send one is refused here instead: one error with a
caret, nothing sent, exit status 1, QEMU healthy and the next line run. Input that used to crash
qmpsh (an integer Python cannot print, a key thousands of levels deep) gets the same treatment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, json_lines, qmpsh_env, run_qmpsh

DIGITS = sys.get_int_max_str_digits()
BIG = "9" * (DIGITS + 1)
DEEP_KEY = ".".join(["a"] * 3000)
QOM_SET = "qom-set path=/machine property=x value="
RAW_QOM_SET = '{"execute": "qom-set", "arguments": {"path": "/machine", "property": "x", "value": %s}}'
TIMEOUT = "10"  # before this change a refused line waited for a reply that never came: 300 s in scripts


def user_requests(log: Path) -> list[dict]:
    """What qmpsh sent for the user's lines, from its --logfile (not negotiation, not its own queries)."""
    sent = [json.loads(line)["message"] for line in log.read_text().splitlines()
            if json.loads(line)["direction"] == "sent"]
    return [m for m in sent if type(m.get("id")) is int]  # qemu.qmp's own ids are "__qmp#N"


def test_a_command_goes_out_in_as_few_bytes_as_qmp_allows(qemu, tmp_path):
    """QEMU reads a request one byte per read (about 2 us each, on this machine kind): no empty
    "arguments", and qmpsh's ids are numbers, not "qmpsh-N"; what the user wrote in JSON goes as written."""
    log = tmp_path / "traffic.jsonl"
    stdin = 'query-status\n{"execute": "query-name", "arguments": {}, "id": "mine"}\nquery-status\n'
    result = run_qmpsh("-l", str(log), qemu.socket, stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    assert user_requests(log) == [{"execute": "query-status", "id": 1},
                                  {"execute": "query-name", "arguments": {}, "id": 2},
                                  {"execute": "query-status", "id": 3}]
    assert json_lines(result.stdout)[1] == {"return": {}, "id": "mine"}


@pytest.mark.parametrize("line, column, message", [
    (QOM_SET + "1e999", len(QOM_SET), "number too large: JSON has no Infinity"),
    (RAW_QOM_SET % "NaN", RAW_QOM_SET.index("%s"), "NaN is not JSON"),
    (RAW_QOM_SET % "-Infinity", RAW_QOM_SET.index("%s"), "-Infinity is not JSON"),
    (QOM_SET + '"\\ud800"', len(QOM_SET), "lone surrogate \\ud800: not valid Unicode"),
    (RAW_QOM_SET % '["\\udc00"]', RAW_QOM_SET.index("%s") + 1, "lone surrogate \\udc00: not valid Unicode"),
    ('{"execute":"query-status","execute":"quit"}', 26, "duplicate key 'execute'"),
    (QOM_SET + '"\\uffff"', len(QOM_SET), "noncharacter U+FFFF: QEMU refuses it"),
    (RAW_QOM_SET % '"x\ufdd0"', RAW_QOM_SET.index("%s") + 2, "noncharacter U+FDD0: QEMU refuses it"),
    (QOM_SET + BIG, len(QOM_SET), f"integer too long: more than {DIGITS} digits"),
    (RAW_QOM_SET % BIG, RAW_QOM_SET.index("%s"), f"integer too long: more than {DIGITS} digits"),
    ("qom-set path=/machine property=x " + DEEP_KEY + "=1", 33, "key nested too deeply: more than 64 levels"),
    ("/wait SHUTDOWN " + DEEP_KEY + "=1", 15, "key nested too deeply: more than 64 levels"),
], ids=["kv-1e999", "raw-NaN", "raw--Infinity", "kv-lone-surrogate", "raw-lone-surrogate", "raw-duplicate-key",
        "kv-noncharacter", "raw-noncharacter",
        "kv-big-int", "raw-big-int", "kv-3000-level-key", "wait-3000-level-key"])
@pytest.mark.parametrize("mode", [[], ["-v"]], ids=["pipelined", "strict-order"])
def test_a_line_qemu_would_refuse_is_refused_with_a_caret(qemu, tmp_path, line, column, message, mode):
    log = tmp_path / "traffic.jsonl"
    started = time.monotonic()
    result = run_qmpsh(*mode, "--timeout", TIMEOUT, "-l", str(log), qemu.socket, stdin=f"{line}\nquery-status\n")
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines() == [f"error: line 1, column {column + 1}: {message}", "  " + line,
                                          "  " + " " * column + "^"], result.stderr[-2000:]
    assert [m["execute"] for m in user_requests(log)] == ["query-status"]  # nothing sent for line 1
    replies = [doc for doc in json_lines(result.stdout) if "execute" not in doc]
    assert replies == [{"return": {"status": "prelaunch", "singlestep": False, "running": False}}]
    assert qemu.alive()
    assert elapsed < float(TIMEOUT), elapsed


@pytest.mark.parametrize("stdin", ["file", "pipe"])
def test_a_byte_that_is_not_utf8_is_refused_where_it_is(qemu, tmp_path, stdin):
    """An undecodable byte was sent as a lone surrogate from a file (QEMU refused it), and replaced
    by U+FFFD, a different name than the user's, from a pipe."""
    script = tmp_path / "script.qmp"
    script.write_bytes(b"qom-set path=/machine property=x value=node-\xff\nquery-status\n")
    log = tmp_path / "traffic.jsonl"
    argv = [sys.executable, "-m", "qmpsh", "--timeout", TIMEOUT, "-l", str(log), qemu.socket]
    if stdin == "file":
        with script.open("rb") as source:
            result = subprocess.run(argv, stdin=source, capture_output=True, env=qmpsh_env(), cwd=REPO, timeout=60)
    else:
        result = subprocess.run(argv, input=script.read_bytes(), capture_output=True, env=qmpsh_env(), cwd=REPO,
                                timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    column = len(QOM_SET) + len("node-")
    assert stderr.splitlines() == [f"error: line 1, column {column + 1}: byte \\xff is not UTF-8",
                                   "  " + QOM_SET + "node-\\udcff", "  " + " " * column + "^"], stderr
    assert [m["execute"] for m in user_requests(log)] == ["query-status"]
    assert json_lines(result.stdout.decode())[0]["return"]["status"] == "prelaunch"


@pytest.mark.parametrize("mode", [[], ["-v"]], ids=["pipelined", "strict-order"])
def test_a_message_past_qemus_limits_is_not_sent(qemu, tmp_path, mode):
    """A message of more than 2**21 tokens is strict JSON, yet QEMU's parser refuses it: it answers
    without an id, then reads the rest on its own, one id-less error for each piece; with OOB on,
    QEMU 7.2 can abort on that many (an assertion on its request queue). So it is not sent."""
    count = 2 ** 20 + 8  # tokens: two per element and a few around, just past the limit
    line = RAW_QOM_SET % ("[" + ",".join(["0"] * count) + "]")
    log = tmp_path / "traffic.jsonl"
    result = run_qmpsh(*mode, "--timeout", TIMEOUT, "-l", str(log), qemu.socket, stdin=f"{line}\nquery-status\n")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "error: line 1: qom-set: not sent: more than 2097152 JSON tokens, which QEMU refuses"], result.stderr[-2000:]
    assert [m["execute"] for m in user_requests(log)] == ["query-status"]
    assert json_lines(result.stdout)[-1]["return"]["status"] == "prelaunch"
    assert qemu.alive()
