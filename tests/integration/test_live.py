"""The live state (``live.LiveState``) against real QEMU: one owner of the run state and the jobs.

The status toolbar and /job read what it keeps; it asks query-status once per connection and
follows run-state events after, and polls query-jobs only while jobs exist or someone follows one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from qmpsh.client import SocketTransport
from qmpsh.render import Renderer
from qmpsh.session import Options, Session
from qmpsh.transport import TransportError
from tests.conftest import Qemu
from tests.integration.test_completion import Sent
from tests.integration.test_jobs import CHAIN, polls, run

TIMEOUT = 30.0


async def until(check: Callable[[], object], what: str, session: Session) -> None:
    """Wait until ``check()`` holds, woken by the live state's changes."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not check():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            pytest.fail(f"timed out waiting for {what}: run state {session.live.run_state!r}, "
                        f"jobs {session.live.jobs!r}")
        try:
            await asyncio.wait_for(session.live.changed(), left)
        except TimeoutError:
            pass


async def connected(qemu: Qemu) -> tuple[Session, Sent]:
    """A session connected to ``qemu``, and the tap that sees what it sends."""
    tap = Sent()
    session = Session(Renderer(), Options(), SocketTransport(qemu.socket, tap=tap))
    await session.connect()
    return session, tap


def test_run_state_and_jobs_are_kept_current(qemu: Qemu) -> None:
    """The run state from one query-status and then events; a job with progress, then gone."""

    async def test() -> None:
        session, tap = await connected(qemu)
        live = session.live
        try:
            for line in CHAIN.splitlines():
                assert await session.run(line), line
            assert live.run_state is None and tap.commands.count("query-status") == 0, "asked before start()"
            live.start()
            await until(lambda: live.run_state == "prelaunch", "the run state", session)
            assert await session.run("cont")
            await until(lambda: live.run_state == "running", "RESUME to be seen", session)
            assert await session.run("stop")
            await until(lambda: live.run_state == "paused", "STOP to be seen", session)
            assert tap.commands.count("query-status") == 1, "the run state after the first one comes from events"

            assert await session.run("block-stream device=node-D job-id=job0 speed=4M")
            await until(lambda: any(j.get("id") == "job0" and (j.get("current-progress") or 0) > 0 for j in live.jobs),
                        "job0 with progress", session)
            assert await session.run("block-job-cancel device=job0")
            await until(lambda: not live.jobs, "job0 to leave", session)
        finally:
            live.stop()
            await session.transport.close()

    asyncio.run(test())


def test_a_new_connection_forgets_the_old_state_and_asks_again(qemu: Qemu) -> None:
    async def test() -> None:
        session, tap = await connected(qemu)
        try:
            session.live.start()
            await until(lambda: session.live.run_state == "prelaunch", "the run state", session)
            await session.reconnect()
            assert session.live.run_state is None, "a reconnect keeps the old QEMU's run state"
            await until(lambda: session.live.run_state == "prelaunch", "the run state again", session)
            assert tap.commands.count("query-status") == 2
        finally:
            session.live.stop()
            await session.transport.close()

    asyncio.run(test())


def test_a_script_following_a_job_asks_only_for_jobs(qemu: Qemu, tmp_path) -> None:
    """/job in a script polls query-jobs a few times a second and asks nothing the toolbar would."""
    log = tmp_path / "qmp.log"
    outcome = run(qemu.socket, CHAIN + "block-stream device=node-D job-id=job0 speed=8M\n/job job0\nquery-name\n",
                  "-l", str(log))
    assert outcome.status == 0, outcome.show()
    assert polls(log, "query-status") == []
    asked = polls(log)
    assert len(asked) >= 3, asked
    span = asked[-1][0] - asked[0][0]
    assert len(asked) <= 5 * span + 3, f"{len(asked)} query-jobs in {span:.2f} s: more than one poller"


def test_following_a_job_polls_only_while_it_follows(qemu: Qemu) -> None:
    """A script's /job starts the polling; it stops once nothing is followed (no query every second after)."""

    async def test() -> None:
        session, tap = await connected(qemu)
        live = session.live
        try:
            with live.following():
                assert await live.fresh_jobs() == ()
                assert live.active
            deadline = asyncio.get_running_loop().time() + 5
            while live.active:
                assert asyncio.get_running_loop().time() < deadline, "still polling with nothing followed"
                await asyncio.sleep(0.05)
            asked = tap.commands.count("query-jobs")
            await asyncio.sleep(1.5)
            assert tap.commands.count("query-jobs") == asked
            assert tap.commands.count("query-status") == 0
        finally:
            await session.transport.close()

    asyncio.run(test())


def test_fresh_jobs_says_at_once_when_there_is_no_connection(qemu: Qemu) -> None:
    async def test() -> None:
        session, _ = await connected(qemu)
        await session.transport.close()
        with pytest.raises(TransportError):
            await asyncio.wait_for(session.live.fresh_jobs(), 2)

    asyncio.run(test())


def test_an_ask_made_as_the_last_task_ends_is_answered(qemu: Qemu) -> None:
    """On a busy machine, /job can ask for fresh jobs after the keeping task ended and before its
    end was handled: that late handling failed the new ask ("the live state stopped"), and /job
    then closed a healthy connection (the README tour failed 3 runs in 6 under two CPU hogs)."""

    async def test() -> None:
        session, _ = await connected(qemu)
        live = session.live
        assert await live.fresh_jobs() == ()
        ended = live._task
        assert ended is not None
        await asyncio.wait_for(ended, 5)  # nothing kept or asked: it ends after one poll interval
        ask = asyncio.ensure_future(live.fresh_jobs())
        await asyncio.sleep(0)  # the ask is made: a new task keeps the state
        live._ended(ended)  # the old task's end, handled late, as under load
        assert await asyncio.wait_for(ask, 5) == ()
        await session.transport.close()

    asyncio.run(test())
