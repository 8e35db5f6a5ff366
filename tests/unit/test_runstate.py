"""The connection's life as one ``Runstate``: each happening's effect, and what callers read of it.

The table is the contract of ``session.AFTER``; the session tests below run its methods over the
in-memory transport of ``test_transport`` to show the same transitions from the outside.
"""

from __future__ import annotations

import asyncio

import pytest

from qmpsh.render import Renderer
from qmpsh.session import AFTER, Happening, Options, Runstate, Session
from tests.unit.test_transport import MemoryTransport

S, H = Runstate, Happening

TRANSITIONS = [
    # from state, happening, to state
    (S.CONNECTED, H.SENT, S.CONNECTED),
    (S.CONNECTED, H.QUIT_SENT, S.QUITTING),
    (S.CONNECTED, H.ANSWERED, S.CONNECTED),
    (S.CONNECTED, H.REFUSED, S.CONNECTED),
    (S.CONNECTED, H.BREAKING, S.LOSING),
    (S.CONNECTED, H.BROKEN, S.LOST),
    (S.CONNECTED, H.LEAVE, S.LEFT),
    (S.CONNECTED, H.STAY, S.CONNECTED),
    (S.QUITTING, H.ANSWERED, S.QUIT),  # QEMU accepted quit
    (S.QUITTING, H.REFUSED, S.CONNECTED),  # quit failed, or was not sent
    (S.QUITTING, H.SENT, S.CONNECTED),  # quit timed out at a terminal, then another command
    (S.QUITTING, H.QUIT_SENT, S.QUITTING),
    (S.QUITTING, H.BREAKING, S.QUIT),  # the hang-up quit asked for: nothing to find out
    (S.QUITTING, H.BROKEN, S.QUIT),
    (S.QUITTING, H.LEAVE, S.QUIT),
    (S.QUITTING, H.CONNECTED, S.CONNECTED),
    (S.LOSING, H.BREAKING, S.LOSING),  # a second notice while the first finds out why: said once
    (S.LOSING, H.BROKEN, S.LOST),
    (S.LOSING, H.SENT, S.LOSING),
    (S.LOSING, H.QUIT_SENT, S.LOSING),
    (S.LOSING, H.LEAVE, S.LEFT),  # Ctrl-D while the loss is found out: leave without saying it
    (S.LOSING, H.CONNECTED, S.CONNECTED),
    (S.LOST, H.BREAKING, S.LOST),
    (S.LOST, H.BROKEN, S.LOST),  # said once
    (S.LOST, H.CONNECTED, S.CONNECTED),  # /reconnect, /connect
    (S.LOST, H.LEAVE, S.LEFT_LOST),  # exit status 3 all the same
    (S.LOST, H.STAY, S.LOST),
    (S.QUIT, H.BROKEN, S.QUIT),
    (S.QUIT, H.BREAKING, S.QUIT),
    (S.QUIT, H.CONNECTED, S.QUIT),
    (S.QUIT, H.STAY, S.QUITTING),
    (S.LEFT, H.STAY, S.CONNECTED),  # asked whether to leave while jobs run: no
    (S.LEFT, H.BROKEN, S.LEFT),
    (S.LEFT, H.BREAKING, S.LEFT),
    (S.LEFT, H.ANSWERED, S.LEFT),
    (S.LEFT, H.CONNECTED, S.LEFT),
    (S.LEFT_LOST, H.STAY, S.LOST),
    (S.LEFT_LOST, H.CONNECTED, S.LEFT),
    (S.LEFT_LOST, H.BROKEN, S.LEFT_LOST),
]


@pytest.mark.parametrize(("before", "happening", "after"), TRANSITIONS,
                         ids=[f"{b.name}+{h.name}" for b, h, _ in TRANSITIONS])
def test_a_happening_moves_the_state(before: Runstate, happening: Happening, after: Runstate):
    assert AFTER.get((before, happening), before) is after


def test_the_table_names_every_pair_it_changes():
    """Every pair the table changes is in TRANSITIONS above: the table has no transition untested."""
    tested = {(before, happening) for before, happening, _ in TRANSITIONS}
    assert set(AFTER) - tested == set()


def session_in(state: Runstate, options: Options | None = None) -> Session:
    session = Session(Renderer(), options or Options(use_schema=False), MemoryTransport({}))
    session._state = state
    return session


@pytest.mark.parametrize(("state", "lost", "finished", "quit_sent"), [
    (S.CONNECTED, False, False, False),
    (S.QUITTING, False, False, True),
    (S.LOSING, False, False, False),
    (S.LOST, True, False, False),
    (S.QUIT, False, True, True),
    (S.LEFT, False, True, False),
    (S.LEFT_LOST, True, True, False),
])
def test_what_callers_read_of_each_state(state: Runstate, lost: bool, finished: bool, quit_sent: bool):
    session = session_in(state)
    assert (session.lost, session.finished, session.quit_sent) == (lost, finished, quit_sent)


@pytest.mark.parametrize(("state", "interactive", "stopped"), [
    (S.CONNECTED, False, False), (S.LOST, False, True), (S.LOST, True, False),  # a terminal can /reconnect
    (S.LEFT, True, True), (S.QUIT, False, True), (S.LEFT_LOST, True, True),
])
def test_what_stops_a_session(state: Runstate, interactive: bool, stopped: bool):
    assert session_in(state, Options(interactive=interactive)).stopped is stopped


def test_leaving_and_staying(capsys):
    session = session_in(S.CONNECTED)
    session.leave()
    assert session.finished and not session.lost
    session.stay()
    assert session.state is S.CONNECTED
    session.connection_lost()
    session.leave()  # Ctrl-D after the loss: over, and still lost (exit status 3)
    assert session.finished and session.lost
    assert capsys.readouterr().err == "error: connection to QEMU lost\n"


def test_a_loss_is_said_once_and_not_at_all_after_quit(capsys):
    session = session_in(S.CONNECTED)
    session.connection_lost(": first")
    session.connection_lost(": second")
    assert session.lost
    quitting = session_in(S.QUITTING)
    quitting.connection_lost(": the server hung up")
    assert quitting.state is S.QUIT
    assert capsys.readouterr().err == "error: connection to QEMU lost: first\n"


def test_quit_runs_through_the_states(capsys):
    async def main() -> Session:
        session = Session(Renderer(), Options(use_schema=False), MemoryTransport({}))
        await session.connect()
        assert await session.run("quit")
        return session

    session = asyncio.run(main())
    assert session.state is S.QUIT and session.quit_sent and session.finished


def test_a_refused_quit_leaves_the_session_connected(capsys):
    async def main() -> Session:
        refused = {"quit": {"error": {"class": "GenericError", "desc": "not now"}}}
        session = Session(Renderer(), Options(use_schema=False), MemoryTransport(refused))
        await session.connect()
        assert not await session.run("quit")
        return session

    session = asyncio.run(main())
    assert session.state is S.CONNECTED and not session.quit_sent and session.failed
    assert capsys.readouterr().err == "error: line 1: quit: GenericError: not now\n"


def test_a_hang_up_after_quit_is_the_end_it_asked_for(capsys):
    async def main() -> Session:
        session = Session(Renderer(), Options(use_schema=False), MemoryTransport({}, hang_up="quit"))
        await session.connect()
        assert await session.run("quit")
        await session.lose("")  # the watcher at a terminal notices too: nothing to say
        return session

    session = asyncio.run(main())
    assert session.state is S.QUIT and not session.lost
    assert capsys.readouterr().err == ""
