"""A session needs nothing of a transport but ``transport.Transport``: here it runs over one in memory.

This is the seam a second transport (a libvirt domain's monitor) plugs into: the session prints
replies and events in the order the transport hands them over, keeps the run state from events,
says a server's error on a query in the transport's neutral words, and notices a lost connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

from qmpsh.render import Renderer
from qmpsh.session import Options, Session
from qmpsh.transport import CommandError, MessageHook, Transport, TransportError

STOP = {"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}


class MemoryTransport:
    """Answers each command from ``answers``, after the events ``events`` holds for it; hangs up on ``hang_up``."""

    where = label = "memory"
    domain = None

    def __init__(self, answers: Mapping[str, Mapping[str, object]], events: Mapping[str, list[dict[str, object]]]
                 | None = None, hang_up: str = "") -> None:
        self.answers = answers
        self.events = events or {}
        self.hang_up = hang_up
        self.last_activity = time.monotonic()
        self.connections = 0
        self._running = False
        self._changed = asyncio.Event()
        self._on_sent: MessageHook = lambda msg: None
        self._on_received: MessageHook = lambda msg: None

    def attach(self, on_sent: MessageHook, on_received: MessageHook) -> None:
        self._on_sent, self._on_received = on_sent, on_received

    def _set_running(self, running: bool) -> None:
        self._running = running
        self._changed.set()
        self._changed = asyncio.Event()

    async def open(self, timeout: float | None = None, wait: float = 0.0) -> None:
        self._set_running(True)
        self.connections += 1

    @property
    def running(self) -> bool:
        return self._running

    async def runstate_changed(self) -> object:
        return await self._changed.wait()

    @property
    def version(self) -> Mapping[str, object] | None:
        return {"qemu": {"major": 9, "minor": 2, "micro": 0}, "package": ""}

    def submit(self, msg: Mapping[str, object], exec_id: str) -> asyncio.Future[Mapping[str, object]]:
        if not self._running:
            raise TransportError("not connected")
        request = {**msg, "id": exec_id}
        self._on_sent(request)
        future: asyncio.Future[Mapping[str, object]] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(self._answer, request, future)  # later, as a server would
        return future

    def _answer(self, request: dict[str, object], future: asyncio.Future[Mapping[str, object]]) -> None:
        command = str(request["execute"])
        if command == self.hang_up:
            self._set_running(False)
            future.set_exception(TransportError("disconnected"))
            return
        for event in self.events.get(command, []):
            self._on_received(event)
        reply = {**self.answers.get(command, {"return": {}}), "id": request["id"]}
        self._on_received(reply)
        future.set_result(reply)

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> object:
        answer = self.answers.get(command, {"return": {}})
        error = answer.get("error")
        if isinstance(error, dict):
            raise CommandError(str(error["class"]), str(error["desc"]))
        return answer["return"]

    async def close(self) -> str | None:
        was_running = self._running
        self._set_running(False)
        return None if was_running else "the server hung up"


def run(transport: MemoryTransport, text: str) -> tuple[bool, Session]:
    async def main() -> tuple[bool, Session]:
        session = Session(Renderer(), Options(use_schema=False), transport)
        await session.connect()
        ok = await session.run(text)
        session.renderer.flush()
        return ok, session

    return asyncio.run(main())


def test_the_memory_transport_is_a_transport():
    assert isinstance(MemoryTransport({}), Transport)


def test_replies_and_events_print_in_the_order_the_transport_hands_them(capsys):
    transport = MemoryTransport({"query-status": {"return": {"status": "paused"}}}, {"query-status": [STOP]})
    ok, session = run(transport, "query-status\nquery-name\n")
    assert ok
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        STOP, {"return": {"status": "paused"}}, {"return": {}}]
    assert session._live is None  # a script that follows no job never makes the live state


def test_the_live_state_follows_run_state_events_once_made(capsys):
    async def main() -> Session:
        transport = MemoryTransport({"query-status": {"return": {"status": "paused"}}}, {"query-status": [STOP]})
        session = Session(Renderer(), Options(use_schema=False), transport)
        await session.connect()
        assert session.live.run_state is None
        await session.run("query-status\n")
        return session

    assert asyncio.run(main()).live.run_state == "paused"  # from the event


def test_a_builtin_says_the_servers_error_in_the_transports_words(capsys):
    transport = MemoryTransport({"query-jobs": {"error": {"class": "GenericError", "desc": "no jobs here"}}})
    ok, _ = run(transport, "/jobs\n")
    assert not ok
    assert capsys.readouterr().err == "error: /jobs: GenericError: no jobs here\n"


def test_a_connection_the_transport_loses_is_said_once(capsys):
    ok, session = run(MemoryTransport({}, hang_up="query-name"), "query-status\nquery-name\nquery-uuid\n")
    assert not ok and session.lost
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [{"return": {}}]
    assert captured.err == ("error: connection to QEMU lost while waiting for the reply to query-name: "
                            "the server hung up\n")
