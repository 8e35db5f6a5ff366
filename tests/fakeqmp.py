"""A scripted fake QMP server, for what a real QEMU cannot produce on demand.

Real QEMU is the reference for everything it can do; this server exists for
the rest: floods of events, malformed or unexpected messages, a server that
stops answering or hangs up in the middle of a reply. qmpsh always runs as a
real subprocess against it, over a real unix socket.

In a test (the server runs in background threads of the test process)::

    from tests.fakeqmp import FakeQMPServer, close_mid_reply, events, raw, reply, silence

    with FakeQMPServer(tmp_path / "qmp.sock") as server:
        server.when("query-status", events(100_000), reply({"status": "running"}))
        server.when("query-name", raw(b'{"return": \\n'), reply())      # malformed JSON, then a reply
        server.when("query-uuid", raw('{"return": {}, "id": "nobody"}\\n'))  # a reply to an unknown id
        server.when("query-kvm", silence())                               # never answers again
        server.when("query-cpus-fast", close_mid_reply({"return": []}))  # hangs up half-way
        result = subprocess.run([sys.executable, "-m", "qmpsh", str(server.path)], input="query-status\\n", ...)
        assert server.requests[-1]["execute"] == "query-status"

In its own process (what ``bench/run.py`` does, so the server never shares a
CPU-bound interpreter with the measuring code)::

    python tests/fakeqmp.py SOCKET --flood 100000 --flood-on query-status
    python tests/fakeqmp.py SOCKET --answer query-qmp-schema=schema.json

It prints ``READY`` on stdout once it accepts connections and serves until
it is terminated (SIGTERM/SIGINT) or its stdin closes.

Protocol as QEMU speaks it: a greeting on connect; commands before
``qmp_capabilities`` get QEMU's ``CommandNotFound`` error; every reply echoes
the request's ``"id"``; messages are one JSON document per line (``\\r\\n``
is not used; QEMU writes ``\\n``). Requests may arrive in any framing: the
input is decoded as a stream of JSON documents, like QEMU's parser does.

How a request is answered, in order:

1. a behaviour scripted with ``when(command, *actions)``: the actions run in
   the order given (so ``events(N), reply()`` sends the events before the
   reply, ``reply(), events(N)`` after it);
2. otherwise ``{"return": {}}``, or what ``answers`` holds for that command,
   with the request's id echoed.

An action is any callable ``action(conn, request)``; ``conn`` is the
:class:`Connection` (``send``, ``send_raw``, ``close``, ``silent``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
Action = Callable[["Connection", JSON], None]

#: What QEMU 7.2 (Debian 12) sends on connect.
GREETING: JSON = {
    "QMP": {
        "version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"},
        "capabilities": ["oob"],
    }
}

_NOT_NEGOTIATED = {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}
_ALREADY_NEGOTIATED = {"class": "CommandNotFound",
                       "desc": "Capabilities negotiation is already complete, command ignored"}


def encode(obj: object) -> bytes:
    """One QMP message on the wire: compact JSON and a newline, as QEMU writes it."""
    return json.dumps(obj, separators=(", ", ": ")).encode() + b"\n"


def with_id(obj: JSON, request: JSON) -> JSON:
    """``obj`` with the request's ``"id"`` echoed (if it had one)."""
    if "id" in request:
        obj = dict(obj)
        obj["id"] = request["id"]
    return obj


# -- actions -------------------------------------------------------------------


def reply(obj: JSON | None = None) -> Action:
    """Answer the request: ``obj`` (default: the server's answer for it) with its id echoed."""

    def act(conn: Connection, request: JSON) -> None:
        answer = obj if obj is not None else conn.server.default_answer(request)
        if answer is not None:
            conn.send(with_id(answer, request))

    return act


def error(klass: str = "GenericError", desc: str = "fake error") -> Action:
    """Answer the request with a QMP error reply."""
    return reply({"error": {"class": klass, "desc": desc}})


def events(count: int, name: str = "JOB_STATUS_CHANGE", data: JSON | None = None,
           start: float | None = None) -> Action:
    """Send ``count`` events as fast as the client reads them.

    Each event is ``{"timestamp": ..., "event": name, "data": {**data, "seq": n}}``
    with ``n`` counting from 0 and timestamps one microsecond apart. The bytes
    are rendered once, here, so sending costs the server nothing but the write.
    """
    base = dict(data if data is not None else {"id": "job0", "status": "running"})
    start = time.time() if start is None else start
    seconds = int(start)
    micros = int((start - seconds) * 1_000_000)
    head = '{"timestamp": {"seconds": '
    name_part = '}, "event": ' + json.dumps(name) + ', "data": '
    chunks = []
    for seq in range(count):
        sec, usec = divmod(micros + seq, 1_000_000)
        base["seq"] = seq
        chunks.append(f'{head}{seconds + sec}, "microseconds": {usec}{name_part}{json.dumps(base)}}}\n')
    payload = "".join(chunks).encode()

    def act(conn: Connection, request: JSON) -> None:
        conn.send_raw(payload)

    return act


def raw(data: bytes | str) -> Action:
    """Send bytes exactly as given: malformed JSON, arrays, replies to unknown ids, partial lines."""
    payload = data.encode() if isinstance(data, str) else data

    def act(conn: Connection, request: JSON) -> None:
        conn.send_raw(payload)

    return act


def delay(seconds: float) -> Action:
    """Wait before the next action (the connection's other requests wait too)."""

    def act(conn: Connection, request: JSON) -> None:
        time.sleep(seconds)

    return act


def silence() -> Action:
    """Stop answering on this connection: later requests are recorded, never answered."""

    def act(conn: Connection, request: JSON) -> None:
        conn.silent = True

    return act


def close() -> Action:
    """Hang up."""

    def act(conn: Connection, request: JSON) -> None:
        conn.close()

    return act


def close_mid_reply(obj: JSON | None = None, keep: float = 0.5) -> Action:
    """Send the first ``keep`` fraction of the reply's bytes, then hang up."""

    def act(conn: Connection, request: JSON) -> None:
        answer = obj if obj is not None else conn.server.default_answer(request) or {"return": {}}
        data = encode(with_id(answer, request))
        conn.send_raw(data[:max(1, int(len(data) * keep))])
        conn.close()

    return act


# -- the server ------------------------------------------------------------------


class Connection:
    """One client: reads requests, runs what the server says for each."""

    def __init__(self, server: FakeQMPServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.silent = False
        self.negotiated = False
        self.closed = False
        self._lock = threading.Lock()

    def send(self, obj: object) -> None:
        self.send_raw(encode(obj))

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def serve(self) -> None:
        if self.server.greeting is not None:
            self.send(self.server.greeting)
        decoder = json.JSONDecoder()
        buffer = ""
        while not self.closed:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk.decode("utf-8", errors="replace")
            while buffer and not self.closed:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    request, end = decoder.raw_decode(buffer)
                except json.JSONDecodeError as err:
                    if err.pos >= len(buffer.rstrip()) or err.msg.startswith("Unterminated"):
                        break  # incomplete: wait for more
                    self._answer_malformed(err)
                    nl = buffer.find("\n", err.pos)
                    buffer = "" if nl < 0 else buffer[nl + 1:]
                    continue
                buffer = buffer[end:]
                self.handle(request)
        self.close()

    def _answer_malformed(self, err: json.JSONDecodeError) -> None:
        if not self.silent:
            self.send({"error": {"class": "GenericError", "desc": f"JSON parse error, {err.msg}"}})

    def handle(self, request: object) -> None:
        self.server.record(request)
        if self.silent:
            return
        if not isinstance(request, dict) or not isinstance(request.get("execute"), str):
            self.send({"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}})
            return
        command = request["execute"]
        if command == "qmp_capabilities":
            self.send(with_id({"error": _ALREADY_NEGOTIATED} if self.negotiated else {"return": {}}, request))
            self.negotiated = True
            return
        if not self.negotiated:
            self.send(with_id({"error": _NOT_NEGOTIATED}, request))
            return
        actions = self.server.scripted(command)
        for action in [reply()] if actions is None else actions:
            if self.closed:
                break
            action(self, request)


class FakeQMPServer:
    """A fake QMP server on a unix socket, serving each client in its own thread.

    ``answers`` maps command names to the reply objects for commands nobody
    scripted (:meth:`default_answer`); ``greeting=None`` sends no greeting.
    """

    #: What serves each client; a subclass may answer more (e.g. exec-oob).
    connection_class: type[Connection] = Connection

    def __init__(self, path: str | os.PathLike[str], *, greeting: JSON | None = GREETING,
                 answers: dict[str, JSON] | None = None) -> None:
        self.path = Path(path)
        self.greeting = greeting
        self.answers: dict[str, JSON] = dict(answers or {})
        self.requests: list[object] = []  # every request received, on any connection, in order
        self.connections: list[Connection] = []
        self._scripts: dict[str, list[tuple[list[Action], int | None]]] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------

    def when(self, command: str, *actions: Action, times: int | None = None) -> FakeQMPServer:
        """Answer ``command`` by running ``actions`` in order (every time, or the next ``times`` times)."""
        with self._lock:
            self._scripts.setdefault(command, []).append((list(actions), times))
        return self

    def scripted(self, command: str) -> list[Action] | None:
        with self._lock:
            queue = self._scripts.get(command)
            if not queue:
                return None
            actions, times = queue[0]
            if times is not None:
                if times <= 1:
                    queue.pop(0)
                else:
                    queue[0] = (actions, times - 1)
            return actions

    def default_answer(self, request: JSON) -> JSON:
        """``answers[command]`` if set, else ``{"return": {}}`` (the id is added by the caller)."""
        return self.answers.get(request.get("execute"), {"return": {}})

    def record(self, request: object) -> None:
        with self._lock:
            self.requests.append(request)

    # -- running -----------------------------------------------------------------

    def start(self) -> FakeQMPServer:
        """Listen and serve in background (daemon) threads; returns at once, ready for clients."""
        if self.path.exists():
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._thread = threading.Thread(target=self._accept_loop, name="fakeqmp-accept", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # stop() closed the listener
            conn = self.connection_class(self, sock)
            with self._lock:
                self.connections.append(conn)
            threading.Thread(target=conn.serve, name="fakeqmp-conn", daemon=True).start()

    def stop(self) -> None:
        """Stop listening, hang up on every client, remove the socket file."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        for conn in list(self.connections):
            conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> FakeQMPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- its own process -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A scripted fake QMP server (prints READY when listening).")
    parser.add_argument("socket", help="unix socket path to listen on")
    parser.add_argument("--flood", type=int, default=0, metavar="N", help="send N events when --flood-on runs")
    parser.add_argument("--flood-on", default="query-status", metavar="COMMAND",
                        help="the command that triggers the flood (default: query-status)")
    parser.add_argument("--flood-after-reply", action="store_true",
                        help="send the events after the reply (default: before it)")
    parser.add_argument("--answer", action="append", default=[], metavar="COMMAND=FILE",
                        help="answer COMMAND with the JSON reply object in FILE (e.g. {\"return\": [...]})")
    return parser


def serve_forever(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    answers = {}
    for spec in args.answer:
        command, _, path = spec.partition("=")
        answers[command] = json.loads(Path(path).read_text())
    server = FakeQMPServer(args.socket, answers=answers)
    if args.flood:
        flood = events(args.flood)
        order = [reply(), flood] if args.flood_after_reply else [flood, reply()]
        server.when(args.flood_on, *order)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch_stdin() -> None:  # the parent went away: stop
        try:
            while os.read(0, 4096):  # os.read: no buffer lock held at interpreter exit
                pass
        except OSError:
            pass
        done.set()

    if sys.stdin is not None and not sys.stdin.isatty():
        threading.Thread(target=watch_stdin, daemon=True).start()
    server.start()
    print("READY", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


class FakeQMPProcess:
    """``tests/fakeqmp.py`` in a subprocess, started and stopped as a context manager."""

    def __init__(self, path: str | os.PathLike[str], *args: str, python: str = sys.executable) -> None:
        import subprocess

        self.path = Path(path)
        self._proc = subprocess.Popen([python, str(Path(__file__).resolve()), str(self.path), *args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != b"READY":
            self._proc.kill()
            raise RuntimeError(f"fake QMP server did not start: {line!r}")

    def stop(self) -> None:
        import subprocess

        if self._proc.stdin is not None:
            self._proc.stdin.close()  # the server stops when its stdin closes
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> FakeQMPProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(serve_forever())
