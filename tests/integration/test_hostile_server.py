"""Hostile and broken QMP servers, against scripted qmpsh run as a real subprocess.

Everything a real QEMU cannot be made to do on demand is played by the fake
server (``tests/fakeqmp.py``): lines that are not JSON, JSON that is not an
object, replies to ids nobody used, id-less errors, missing or malformed
greetings, a refused capabilities negotiation, a 20 MB reply, a server that
goes quiet or hangs up in the middle of a reply, an event flood. A few
greeting and negotiation faults need bytes that the fake server cannot send
before a request arrives; a tiny raw socket server (``RawServer``) plays
those.

For each fault qmpsh must give the documented exit status (0 ok, 1 a line
failed, 2 usage, 3 connection failed or lost), say what happened in one line
on stderr, never print a traceback, and never hang: every qmpsh run is
bounded by ``RUN_TIMEOUT``, far below any test runner's timeout.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_qmpsh
from tests.fakeqmp import (GREETING, FakeQMPServer, close, close_mid_reply, delay, encode, error, events, raw,
                           reply, silence, with_id)

RUN_TIMEOUT = 20.0  # seconds any one qmpsh run may take before the test calls it a hang
QUICK = 5.0  # a fault qmpsh can see at once is reported within this (python start-up included)

STATUS = {"return": {"status": "running", "singlestep": False, "running": True}}
NAME = {"return": {"name": "fake"}}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    def docs(self) -> list[object]:
        """stdout as the JSON documents it must consist of, one per line."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def qmpsh(*args: str, stdin: str = "", timeout: float = RUN_TIMEOUT) -> Run:
    started = time.monotonic()
    try:
        result = run_qmpsh(*args, stdin=stdin, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"qmpsh hung: no exit within {timeout:g} s\nstdout: {err.stdout!r}\nstderr: {err.stderr!r}")
    run = Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)
    assert "Traceback" not in run.stdout and "Traceback" not in run.stderr, run
    return run


def one_error_line(run: Run) -> str:
    """stderr must be exactly one line, an error; return it."""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {run.stderr!r}"
    assert lines[0].startswith("error: "), run.stderr
    return lines[0]


def connect_failed(run: Run, path: object, reason: str) -> None:
    """qmpsh gave up connecting at once: exit 3 and one line, ``cannot connect to PATH: ...reason...``."""
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line.startswith(f"error: cannot connect to {path}: "), line
    assert reason in line, line
    assert run.elapsed < QUICK, run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeQMPServer]:
    with FakeQMPServer(tmp_path / "qmp.sock") as fake:
        yield fake


def user_requests(server: FakeQMPServer) -> list[dict]:
    """What qmpsh sent for the user's lines (not negotiation, not its own queries)."""
    return [r for r in server.requests if isinstance(r, dict) and type(r.get("id")) is int]


# ---------------------------------------------------------------------------
# A raw server, for faults before any request (greeting, negotiation)


def read_request(conn: socket.socket) -> dict | None:
    """One JSON request from the client (in any framing); None when it hangs up."""
    decoder = json.JSONDecoder()
    buffer = ""
    while True:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buffer += chunk.decode()
        try:
            obj, _ = decoder.raw_decode(buffer.lstrip())
        except json.JSONDecodeError:
            continue
        return obj


class RawServer:
    """A unix socket whose every client is served by ``script(conn)``; records what arrived."""

    def __init__(self, path: Path, script: Callable[[socket.socket, RawServer], None]) -> None:
        self.path = path
        self.script = script
        self.accepted = 0
        self.requests: list[dict] = []
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen(4)
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.script(conn, self)
        except OSError:
            pass  # the client went away first: that is its business
        finally:
            conn.close()

    def request(self, conn: socket.socket) -> dict | None:
        request = read_request(conn)
        if request is not None:
            self.requests.append(request)
        return request

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def start(script: Callable[[socket.socket, RawServer], None]) -> RawServer:
        srv = RawServer(tmp_path / "raw.sock", script)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.close()


def hold(conn: socket.socket, seconds: float = 4.0) -> None:
    """Keep the connection open, unanswered, until the client hangs up (or ``seconds`` pass)."""
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


# ---------------------------------------------------------------------------
# Messages that are not QMP while a command waits


@pytest.mark.parametrize("junk, reason", [
    (b"this is not json\n", "the server sent a line that is not JSON: 'this is not json'"),
    (b"\n", "the server sent a line that is not JSON"),
    (b'{"return": {}, "id": 1}{"return": {}}\n', "the server sent a line that is not JSON"),
    (b"[1, 2, 3]\n", "the server sent JSON that is not an object: [1, 2, 3]"),
    (b'"a string"\n', "the server sent JSON that is not an object"),
], ids=["text", "empty-line", "two-documents", "array", "string"])
def test_junk_while_waiting_loses_the_connection_clearly(server, junk, reason):
    server.when("query-status", raw(junk), reply(STATUS))
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line.startswith("error: connection to QEMU lost while waiting for the reply to query-status: "), line
    assert reason in line, line
    assert run.stdout == "", run  # nothing was a reply to anything
    assert run.elapsed < QUICK, run


@pytest.mark.parametrize("junk", [
    b'{"return": "\xff\xfe", "id": 1}\n',
    b'{"return": ' + b"[" * 100_000 + b"]" * 100_000 + b', "id": 1}\n',
], ids=["invalid-utf8", "nested-100000-deep"])
def test_undecodable_reply_loses_the_connection_clearly(server, junk):
    server.when("query-status", raw(junk))
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line.startswith("error: connection to QEMU lost while waiting for the reply to query-status: "), line
    assert run.elapsed < QUICK, run


@pytest.mark.parametrize("event", [
    {"event": "NO_TIMESTAMP"},
    {"event": 42, "timestamp": {"seconds": 1, "microseconds": 2}},
    {"event": None},
    {"event": "BLOCK_JOB_COMPLETED", "data": "not an object", "timestamp": {"seconds": "soon"}},
], ids=["no-timestamp", "numeric-name", "null-name", "odd-data-and-time"])
def test_odd_events_are_printed_as_sent(server, event):
    server.when("query-status", raw(encode(event)), reply(STATUS))
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 0, run
    assert run.docs() == [event, STATUS, {"return": {}}]
    assert run.stderr == ""


def test_junk_after_a_reply_is_reported_for_the_next_command(server):
    server.when("query-status", reply(STATUS), raw(b"garbage\n"))
    run = qmpsh("-v", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 3, run
    assert run.docs()[:2] == [{"execute": "query-status"}, STATUS]
    line = one_error_line(run)
    assert "connection to QEMU lost" in line and "not JSON: 'garbage'" in line, line


@pytest.mark.parametrize("mode", [[], ["-e"]], ids=["pipelined", "one-at-a-time"])
def test_junk_in_the_same_read_as_a_reply_ends_the_connection_before_the_next_line(server, mode):
    """The reply and the junk arrive in one read: the connection is over before the reply's line is
    done, so the next line is never sent. (Messages are handed on from the connection's protocol:
    a fault found there must end the connection at once, not when the reader task next runs.)"""
    server.when("query-status", lambda conn, request: conn.send_raw(encode(with_id(STATUS, request)) + b"garbage\n"))
    run = qmpsh(*mode, "-v", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 3, run
    assert run.docs() == [{"execute": "query-status"}, STATUS], run
    assert [r["execute"] for r in user_requests(server)] == ["query-status"]
    line = one_error_line(run)
    assert "connection to QEMU lost" in line and "not JSON: 'garbage'" in line, line


@pytest.mark.parametrize("stray_id", ['"nobody"', "17", "1.5", "true", "null", "[1]", '{"a": 1}'],
                         ids=["string", "int", "float", "bool", "null", "array", "object"])
@pytest.mark.parametrize("order", ["before-reply", "after-reply"])
def test_reply_with_unknown_id_is_noted_and_the_real_reply_attributed(server, stray_id, order):
    stray = f'{{"return": {{"stray": "not yours"}}, "id": {stray_id}}}\n'
    actions = [raw(stray), reply(STATUS)] if order == "before-reply" else [reply(STATUS), raw(stray)]
    server.when("query-status", *actions)
    server.when("query-name", reply(NAME))
    run = qmpsh("-v", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 0, run
    assert run.docs() == [{"execute": "query-status"}, STATUS,
                          {"execute": "query-name"}, NAME], run
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("the server sent a reply with an unknown id, ignored: "), run.stderr
    assert json.loads(lines[0].split("ignored: ", 1)[1]) == json.loads(stray)


def test_unknown_id_reply_while_pipelining(server):
    """Without -v scripts pipeline their requests; a stray reply still belongs to nobody."""
    server.when("query-status", raw('{"return": {"stray": 1}, "id": "nobody"}\n'), reply(STATUS))
    server.when("query-name", reply(NAME))
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\nquery-status\n")
    assert run.returncode == 0, run
    assert run.docs() == [STATUS, NAME, STATUS], run
    assert run.stderr.count("the server sent a reply with an unknown id, ignored: ") == 2, run.stderr
    assert "stray" not in run.stdout


PARSE_ERROR = {"error": {"class": "GenericError", "desc": "JSON parse error, stray 'N'"}}


@pytest.mark.parametrize("mode", [[], ["-v"]], ids=["pipelined", "strict-order"])
def test_error_without_id_is_the_reply_to_the_oldest_request(server, mode):
    """QEMU answers in order, and gives no id when it could not read the request: the error is the
    oldest request's reply. Before, it was ignored and the line waited until --timeout (exit 3)."""
    server.when("query-status", raw(encode(PARSE_ERROR)))
    server.when("query-name", reply(NAME))
    run = qmpsh(*mode, "--timeout", "5", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 1, run
    replies = [doc for doc in run.docs() if "execute" not in doc and "event" not in doc]
    assert replies == [PARSE_ERROR, NAME], run
    assert run.stderr.splitlines() == ["error: line 1: query-status: GenericError: JSON parse error, stray 'N'"], run
    assert run.elapsed < QUICK, run


def test_error_without_id_after_the_oldest_request_failed_is_no_ones(server):
    """After a message it cannot read QEMU reads what follows on its own, with an id-less error for each
    piece, until the next request: those belong to no request, nor does the real reply to one answered."""
    server.when("query-status", raw(encode(PARSE_ERROR) * 3), reply(STATUS))
    server.when("query-name", reply(NAME))
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 1, run
    assert [doc for doc in run.docs()] == [PARSE_ERROR, NAME], run
    lines = run.stderr.splitlines()
    assert lines[0] == "error: line 1: query-status: GenericError: JSON parse error, stray 'N'", run
    assert [line.split(", ignored: ")[0] for line in lines[1:]] == ["the server sent an error without an id"] * 2 + [
        "the server sent a reply with an unknown id"], run


def test_error_without_id_and_nothing_in_flight_is_noted(server):
    server.when("query-status", reply(STATUS), raw(encode(PARSE_ERROR)), events(1, "DONE"))
    run = qmpsh("-v", "--no-schema", str(server.path), stdin="query-status\n/wait DONE\n")
    assert run.returncode == 0, run
    assert [doc.get("event", doc) for doc in run.docs()] == [{"execute": "query-status"}, STATUS,
                                                              "DONE"]
    assert run.stderr == f"the server sent an error without an id, ignored: {json.dumps(PARSE_ERROR)}\n"


def strict_json(line: str) -> object:
    """``line`` as JSON that has no NaN or Infinity (Python's json reads them; jq and JSON do not)."""
    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON: {line!r}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("mode", [[], ["-v"]], ids=["pipelined", "strict-order"])
def test_nan_and_infinity_from_the_server_print_as_json(server, mode):
    """stdout stays JSON lines: NaN and Infinity print as strings, and the line with such a reply fails."""
    event = b'{"event": "ODD", "data": {"x": NaN}, "timestamp": {"seconds": 1, "microseconds": 2}}\n'
    answer = b'{"return": {"a": NaN, "b": [Infinity, -Infinity], "c": 1.5, "d": "NaN"}, "id": 1}\n'
    server.when("query-status", raw(event), raw(answer))
    run = qmpsh(*mode, str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 1, run
    docs = [strict_json(line) for line in run.stdout.splitlines()]
    assert [doc for doc in docs if "execute" not in doc] == [
        {"event": "ODD", "data": {"x": "NaN"}, "timestamp": {"seconds": 1, "microseconds": 2}},
        {"return": {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5, "d": "NaN"}},
        {"return": {}}], run
    assert run.stderr.splitlines() == [
        "event ODD: NaN or Infinity (not JSON) printed as strings",
        "error: line 1: query-status: NaN or Infinity (not JSON) printed as strings"], run


@pytest.mark.parametrize("answer", [b'{"id": 1}\n', b'{"id": 1, "error": "boom"}\n'],
                         ids=["neither-return-nor-error", "error-not-an-object"])
def test_malformed_reply_fails_the_line(server, answer):
    server.when("query-status", raw(answer))
    run = qmpsh("-v", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 1, run
    assert run.docs()[-2:] == [{"execute": "query-name"}, {"return": {}}], run
    line = one_error_line(run)
    assert line.startswith("error: line 1: query-status: malformed reply"), line


@pytest.mark.parametrize("line", ["/jobs", "/job job0"])
def test_builtin_whose_query_fails_says_the_servers_error(server, line):
    server.when("query-jobs", error("GenericError", "jobs are broken"))
    run = qmpsh(str(server.path), stdin=f"{line}\nquery-name\n")
    assert run.returncode == 1, run
    assert run.docs() == [{"return": {}}], run  # the next line still runs
    assert one_error_line(run) == f"error: {line.split()[0]}: GenericError: jobs are broken"


# ---------------------------------------------------------------------------
# Greeting and negotiation


def test_missing_greeting_times_out_fast(tmp_path):
    with FakeQMPServer(tmp_path / "qmp.sock", greeting=None) as server:
        run = qmpsh("--timeout", "1", str(server.path), stdin="query-status\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line == f"error: cannot connect to {server.path}: no greeting from the server within 1 s", line
    assert 1.0 <= run.elapsed < QUICK, run
    assert server.requests == []  # nothing is sent before a greeting


@pytest.mark.parametrize("greeting, reason", [
    ({"hello": "world"}, "the server's greeting is not a QMP greeting"),
    ({"QMP": {"version": {}}}, "the server's greeting is not a QMP greeting"),
    ({"return": {}}, "the server's greeting is not a QMP greeting"),
    ([1, 2], "the server's greeting is not a QMP greeting (the server sent JSON that is not an object: [1, 2])"),
], ids=["foreign-object", "no-capabilities", "a-reply", "array"])
def test_malformed_greeting(tmp_path, greeting, reason):
    with FakeQMPServer(tmp_path / "qmp.sock", greeting=greeting) as server:
        run = qmpsh("--timeout", "5", str(server.path), stdin="query-status\n")
    connect_failed(run, server.path, reason)
    assert server.requests == []


@pytest.mark.parametrize("sent, reason", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "(the server sent a line that is not JSON: 'SSH-2.0-OpenSSH_9.2')"),
    (encode(GREETING)[:25], "(the server closed the connection in the middle of a message)"),
    (b"", "the server closed the connection"),
], ids=["not-json", "cut-short", "hang-up"])
def test_broken_greeting(raw_server, sent, reason):
    def script(conn: socket.socket, srv: RawServer) -> None:
        conn.sendall(sent)  # then hang up

    srv = raw_server(script)
    run = qmpsh("--timeout", "5", str(srv.path), stdin="query-status\n")
    connect_failed(run, srv.path, reason)


@pytest.mark.parametrize("with_id", [True, False], ids=["echoing-id", "id-less"])
def test_negotiation_error_shows_the_servers_words(raw_server, with_id):
    def script(conn: socket.socket, srv: RawServer) -> None:
        conn.sendall(encode(GREETING))
        request = srv.request(conn)
        answer = {"error": {"class": "GenericError", "desc": "Capabilities negotiation refused by policy"}}
        if with_id and request and "id" in request:
            answer["id"] = request["id"]
        conn.sendall(encode(answer))
        hold(conn)

    srv = raw_server(script)
    run = qmpsh("--timeout", "5", str(srv.path), stdin="query-status\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line == (f"error: cannot connect to {srv.path}: capabilities negotiation failed: "
                    "Capabilities negotiation refused by policy"), line
    assert run.elapsed < QUICK, run
    assert [r.get("execute") for r in srv.requests] == ["qmp_capabilities"]  # query-status never went out


@pytest.mark.parametrize("answer, reason", [
    (b"nonsense\n", "capabilities negotiation failed (the server sent a line that is not JSON: 'nonsense')"),
    (b"[]\n", "capabilities negotiation failed (the server sent JSON that is not an object"),
    (b'{"return": {', "capabilities negotiation failed (the server closed the connection in the middle"),
], ids=["not-json", "array", "cut-short"])
def test_broken_negotiation_reply(raw_server, answer, reason):
    def script(conn: socket.socket, srv: RawServer) -> None:
        conn.sendall(encode(GREETING))
        srv.request(conn)
        conn.sendall(answer)  # then hang up

    srv = raw_server(script)
    run = qmpsh("--timeout", "5", str(srv.path), stdin="query-status\n")
    connect_failed(run, srv.path, reason)


def test_unanswered_negotiation_times_out_and_says_so(raw_server):
    """The greeting came; the answer to qmp_capabilities never does. Not "no greeting"."""
    def script(conn: socket.socket, srv: RawServer) -> None:
        conn.sendall(encode(GREETING))
        srv.request(conn)
        hold(conn)

    srv = raw_server(script)
    run = qmpsh("--timeout", "1", str(srv.path), stdin="query-status\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line.startswith(f"error: cannot connect to {srv.path}: "), line
    assert "no greeting" not in line, f"the greeting did arrive: {line}"
    assert "negotiation" in line and "1 s" in line, line
    assert 1.0 <= run.elapsed < QUICK, run


def test_messages_cut_anywhere_by_the_reads_arrive_whole_and_in_order(server):
    """qmpsh reads what has arrived, not a message at a time: an event and a reply cut across writes,
    several messages in one write, and a last reply without its newline before the server hangs up
    (read as a message, as qemu.qmp reads it) each arrive whole, in wire order."""
    event = encode({"event": "ODD", "data": {"n": 1}, "timestamp": {"seconds": 1, "microseconds": 2}})
    status = encode({**STATUS, "id": 1})
    server.when("query-status", raw(event[:7]), delay(0.2), raw(event[7:] + status[:5]), delay(0.2),
                raw(status[5:] + event))
    server.when("query-name", raw(encode({**NAME, "id": 2}).rstrip(b"\n")), close())
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\n")
    assert run.docs() == [json.loads(event), STATUS, json.loads(event), NAME], run
    assert run.returncode == 0, run


# ---------------------------------------------------------------------------
# Size and volume


def test_20_mb_reply_is_printed_whole(tmp_path):
    big = {"return": [{"node-name": f"node-{i}", "file": "x" * 1000, "index": i, "ro": i % 2 == 0}
                      for i in range(20_000)]}
    assert len(json.dumps(big)) > 20_000_000
    with FakeQMPServer(tmp_path / "qmp.sock", answers={"query-named-block-nodes": big}) as server:
        run = qmpsh(str(server.path), stdin="query-named-block-nodes\nquery-name\n")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == big  # whole and valid
    assert json.loads(lines[1]) == {"return": {}}


def test_event_flood_while_a_command_waits(server):
    count = 50_000
    server.when("query-status", events(count, name="BLOCK_JOB_PROGRESS_FAKE"), reply(STATUS))
    run = qmpsh(str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    docs = run.docs()
    assert len(docs) == count + 2
    assert [d["data"]["seq"] for d in docs[:count]] == list(range(count))  # every event, in order
    assert all(d["event"] == "BLOCK_JOB_PROGRESS_FAKE" for d in docs[:count])
    assert docs[count:] == [STATUS, {"return": {}}]  # the replies after them, each its own


def test_event_flood_outlasting_the_timeout_is_not_a_lost_connection(server):
    """--timeout is for a server that went silent; one that keeps talking is there.

    The server writes its 100 000 events and the reply at once; reading and
    printing them takes qmpsh longer than the 0.5 s timeout.
    """
    count = 100_000
    server.when("query-status", events(count), reply(STATUS))
    run = qmpsh("--timeout", "0.5", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 0, (run.returncode, run.stderr)
    assert "connection to QEMU lost" not in run.stderr, run.stderr
    docs = run.docs()
    assert len(docs) == count + 2 and docs[count:] == [STATUS, {"return": {}}]


# ---------------------------------------------------------------------------
# A server that goes away or goes quiet


def test_server_stops_answering_mid_reply(server):
    partial = encode({"return": {"status": "running", "singlestep": False}})[:20]
    server.when("query-status", raw(partial), silence())
    run = qmpsh("--timeout", "1", str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    assert line == "error: connection to QEMU lost (no reply to query-status within 1 s)", line
    assert 1.0 <= run.elapsed < QUICK, run
    assert run.stdout == ""


def test_server_stops_answering_altogether(server):
    server.when("query-name", silence())
    run = qmpsh("--timeout", "1", "-v", str(server.path), stdin="query-status\nquery-name\nquery-status\n")
    assert run.returncode == 3, run
    assert run.docs() == [{"execute": "query-status"}, {"return": {}},
                          {"execute": "query-name"}]
    assert one_error_line(run) == "error: connection to QEMU lost (no reply to query-name within 1 s)"
    assert run.elapsed < QUICK, run


@pytest.mark.parametrize("mode", [[], ["-v"]], ids=["pipelined", "strict-order"])
def test_server_hangs_up_mid_reply(server, mode):
    """The reason names what the socket showed: a half reply, or a reset.

    The server takes a moment first, so that a pipelined query-name is surely
    waiting, unread, in its socket when it hangs up: the kernel then resets
    the connection, and the half reply may be discarded before qmpsh can read
    it, so the reset is all there is to report. In strict order nothing is
    left unread and the half reply is seen.
    """
    server.when("query-status", delay(0.3), close_mid_reply(STATUS))
    run = qmpsh(*mode, str(server.path), stdin="query-status\nquery-name\n")
    assert run.returncode == 3, run
    line = one_error_line(run)
    reasons = ["the server closed the connection in the middle of a message"]
    if not mode:
        reasons.append("the server reset the connection")
    assert line in [f"error: connection to QEMU lost while waiting for the reply to query-status: {r}"
                    for r in reasons], line
    assert run.elapsed < QUICK, run
    assert run.stdout == ("" if not mode else '{"execute": "query-status"}\n')


def test_server_hangs_up_instead_of_replying(server):
    server.when("query-name", close())
    run = qmpsh("-v", str(server.path), stdin="query-status\nquery-name\nquery-status\n")
    assert run.returncode == 3, run
    assert run.docs()[:2] == [{"execute": "query-status"}, {"return": {}}]
    line = one_error_line(run)
    assert line.startswith("error: connection to QEMU lost while waiting for the reply to query-name: "), line
    assert line.endswith(("the server closed the connection", "the server reset the connection")), line
    assert run.elapsed < QUICK, run


# ---------------------------------------------------------------------------
# Waiting for the socket; a logfile that cannot be opened


def test_wait_for_socket_connects_once_the_server_starts(tmp_path):
    server = FakeQMPServer(tmp_path / "qmp.sock")
    timer = threading.Timer(1.0, server.start)
    timer.start()
    try:
        run = qmpsh("--wait-for-socket", "5", str(server.path), stdin="query-status\n")
    finally:
        timer.join()
        server.stop()
    assert run.returncode == 0, run
    assert run.docs() == [{"return": {}}]
    assert run.stderr == ""
    assert 0.9 <= run.elapsed < 5, run


def test_wait_for_socket_retries_a_refusing_socket(tmp_path):
    """A socket file that refuses connections (QEMU not listening yet, or a stale file)."""
    path = tmp_path / "qmp.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, not listening: connect() gets ECONNREFUSED
    server = FakeQMPServer(path)

    def take_over() -> None:
        stale.close()
        server.start()

    timer = threading.Timer(1.0, take_over)
    timer.start()
    try:
        run = qmpsh("--wait-for-socket", "5", str(path), stdin="query-status\n")
    finally:
        timer.join()
        server.stop()
    assert run.returncode == 0, run
    assert run.docs() == [{"return": {}}]
    assert 0.9 <= run.elapsed < 5, run


def test_without_wait_for_socket_a_missing_socket_fails_at_once(tmp_path):
    path = tmp_path / "qmp.sock"
    server = FakeQMPServer(path)
    timer = threading.Timer(1.5, server.start)
    timer.start()
    try:
        run = qmpsh(str(path), stdin="query-status\n")
    finally:
        timer.join()
        server.stop()
    assert run.returncode == 3, run
    assert one_error_line(run) == f"error: cannot connect to {path}: No such file or directory"
    assert run.elapsed < 1.5, run  # did not wait for the server


def test_wait_for_socket_gives_up_after_its_time(tmp_path):
    path = tmp_path / "qmp.sock"
    run = qmpsh("--wait-for-socket", "1", str(path), stdin="query-status\n")
    assert run.returncode == 3, run
    assert one_error_line(run) == f"error: cannot connect to {path}: No such file or directory"
    assert 1.0 <= run.elapsed < QUICK, run


def test_logfile_in_a_missing_directory_fails_before_connecting(server, tmp_path):
    log = tmp_path / "no-such-dir" / "traffic.jsonl"
    run = qmpsh("-l", str(log), str(server.path), stdin="query-status\n")
    assert run.returncode == 2, run
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].endswith(f"cannot open logfile {log}: No such file or directory"), run.stderr
    time.sleep(0.2)  # an accept would have been recorded by now
    assert server.connections == [] and server.requests == []
    assert not log.parent.exists()


def test_a_reply_to_qmpshs_own_query_that_is_no_reply_fails_the_line_not_the_session(server):
    """/job asks query-jobs for itself; an answer with neither "return" nor "error" is the server's fault,
    but the connection is still up: the line fails in one line, and the next line runs. It used to
    close the connection and say "the server closed the connection" (exit status 3)."""
    server.when("query-jobs", reply({"bogus": 1}))
    run = qmpsh(str(server.path), stdin="/job job0\nquery-name\n")
    assert run.stderr == "error: /job: QMP reply is missing a 'error' or 'return' member\n", run
    assert run.docs() == [{"return": {}}], run  # query-name, answered: the session went on
    assert run.returncode == 1, run
