"""Requests on their way (``inflight``): ids, the user's own id, late replies, replies nobody asked for.

A session in this process talks over a real socket to the fake server (``tests/fakeqmp.py``): a real
QEMU cannot be made to answer late or with an id nobody used.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmpsh.client import SocketTransport
from qmpsh.render import Renderer
from qmpsh.session import Options, Session
from tests.fakeqmp import FakeQMPServer, delay, raw, reply

STATUS = {"return": {"status": "running", "singlestep": False, "running": True}}
NAME = {"return": {"name": "fake"}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeQMPServer]:
    with FakeQMPServer(tmp_path / "qmp.sock") as fake:
        yield fake


def run(server: FakeQMPServer, options: Options, *chunks: str, pause: float = 0.0) -> list[bool]:
    """Each chunk run in turn (``pause`` seconds apart), at the prompt (``session.run``) when
    interactive, else as a script."""

    async def main() -> list[bool]:
        session = Session(Renderer(), options, SocketTransport(str(server.path)))
        await session.connect()
        try:
            results = []
            for chunk in chunks:
                await asyncio.sleep(pause if results else 0)
                if options.interactive:
                    results.append(await asyncio.wait_for(session.run(chunk), 10))
                else:
                    for lineno, line in enumerate(chunk.splitlines(keepends=True), 1):
                        await session.run_line(line, lineno)
                    await session.end_input()
                    results.append(not session.failed)
            return results
        finally:
            await session.transport.close()
            session.renderer.flush()

    return asyncio.run(main())


def user_requests(server: FakeQMPServer) -> list[dict]:
    return [r for r in server.requests if isinstance(r, dict) and r.get("execute") != "qmp_capabilities"]


def test_each_request_has_an_id_of_its_own_and_the_user_sees_theirs(server, capsys):
    lines = ('query-status\n{"execute": "query-name", "id": "mine"}\n{"execute": "query-status", "id": 7}\n'
             'query-name\n')
    assert run(server, Options(use_schema=False, pipeline=True), lines) == [True]
    assert [r["id"] for r in user_requests(server)] == [1, 2, 3, 4]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"return": {}}, {"return": {}, "id": "mine"}, {"return": {}, "id": 7}, {"return": {}}]


def test_verbose_shows_the_request_with_the_users_id(server, capsys):
    assert run(server, Options(use_schema=False, verbose=True), '{"execute": "query-name", "id": "mine"}\n') == [True]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        {"execute": "query-name", "id": "mine"}, {"return": {}, "id": "mine"}]


def test_a_late_reply_is_shown_as_late_and_not_taken_for_the_next_lines(server, capsys):
    server.when("query-status", delay(0.6), reply(STATUS), times=1)
    server.when("query-name", reply(NAME))
    options = Options(use_schema=False, interactive=True, timeout=0.3)
    assert run(server, options, "query-status", "query-name", pause=0.5) == [False, True]
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [STATUS, NAME]
    assert captured.err.splitlines() == [
        "error: no reply to query-status within 0.3 s; a late reply will be shown as late",
        "late reply to query-status (line 1):"]


def test_a_reply_with_an_unknown_id_is_noted_and_the_line_gets_its_own(server, capsys):
    stray = {"return": {"stray": 1}, "id": 99}
    server.when("query-status", raw(json.dumps(stray) + "\n"), reply(STATUS))
    assert run(server, Options(use_schema=False, pipeline=True), "query-status\nquery-name\n") == [True]
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [STATUS, {"return": {}}]
    note, = captured.err.splitlines()
    assert note.startswith("the server sent a reply with an unknown id, ignored: "), note
    assert json.loads(note.split("ignored: ", 1)[1]) == stray


def test_a_scripts_error_reply_names_its_line(server, capsys):
    server.when("query-name", reply({"error": {"class": "GenericError", "desc": "no name"}}))
    assert run(server, Options(use_schema=False, pipeline=True), "query-status\n\nquery-name\n") == [False]
    assert capsys.readouterr().err == "error: line 3: query-name: GenericError: no name\n"


def test_a_script_that_ends_inside_brackets_fails_and_runs_nothing_of_it(server, capsys):
    assert run(server, Options(use_schema=False, pipeline=True), 'query-status\n{"execute": "query-name",\n') == [False]
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [{"return": {}}]
    assert captured.err.startswith("error: line 2, column 26: unexpected end of input"), captured.err
    assert [r["execute"] for r in user_requests(server)] == ["query-status"]


def test_a_command_that_succeeds_late_is_kept_for_save(server, capsys):
    """The line gave up on query-status, but QEMU ran it: /save keeps it, before the next command."""
    from qmpsh.record import Recorder

    server.when("query-status", delay(0.6), reply(STATUS), times=1)
    server.when("query-name", reply(NAME))
    recorder = Recorder()
    options = Options(use_schema=False, interactive=True, timeout=0.3)

    async def main() -> None:
        session = Session(Renderer(), options, SocketTransport(str(server.path)), recorder=recorder)
        await session.connect()
        try:
            assert not await session.run("query-status")
            await asyncio.sleep(0.5)
            assert await session.run("query-name")
        finally:
            await session.transport.close()

    asyncio.run(main())
    assert recorder.lines == ["query-status", "query-name"]
