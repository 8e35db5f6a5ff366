"""The live state of the QEMU a session talks to: the VM's run state and the jobs, with progress.

One owner keeps them current for everything that shows them (the status toolbar, ``/job``'s
progress bar, the question asked on leaving): the run state from ``query-status`` once per
connection and from run-state events after it; the jobs from ``query-jobs``, asked again when a
job's event says they changed and polled while any job exists (progress moves without events):
once a second, four times a second while someone follows a job (``/job``). Readers read what is
kept and never wait on QEMU, unless they ask for a fresh answer (``fresh_jobs``).

Nothing is asked until something starts it: a script that never follows a job never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, cast

from qmpsh.events import Event, Subscriber
from qmpsh.transport import CommandError, TransportError

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON, JobInfo

POLL_SECONDS = 1.0
FOLLOW_POLL_SECONDS = 0.25  # while a /job follows a job's progress
STATUS_RETRY_MAX = 32.0  # seconds: the longest wait before asking again for a run state that failed

#: The VM run state each event leaves the VM in.
RUN_STATE_EVENTS = {"STOP": "paused", "RESUME": "running", "SHUTDOWN": "shutdown", "SUSPEND": "suspended",
                    "WAKEUP": "running", "GUEST_PANICKED": "guest-panicked"}

Query = Callable[[str], Awaitable["JSON"]]


class LiveState(Subscriber):
    """The run state and the jobs of one session's QEMU, kept current in the background."""

    def __init__(self, query: Query, connected: Callable[[], bool]) -> None:
        self._query = query
        self._connected = connected
        self.run_state: str | None = None  # None: not known yet; "": the server has none (qemu-storage-daemon)
        self.jobs: tuple[JobInfo, ...] = ()  # as query-jobs said last
        self._jobs_stale = True  # query-jobs is due: a job event came, or nothing is known yet
        self._status_retry, self._status_due = POLL_SECONDS, 0.0  # backing off a failing query-status
        self._followers = 0
        self._kept = False  # start() was called: the run state and every job are kept current
        self._run_events = 0  # run-state events seen: a query-status answer older than one is stale
        self._next_jobs: asyncio.Future[tuple[JobInfo, ...]] | None = None  # for fresh_jobs: the next answer
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- reading ------------------------------------------------------------------

    async def changed(self) -> None:
        """Wait until the run state or the jobs change."""
        await self._changed.wait()

    async def fresh_jobs(self) -> tuple[JobInfo, ...]:
        """The jobs as QEMU says after this call (query-jobs sent from now on, never an answer older).

        :raise TransportError: QEMU could not say (CommandError where it has no query-jobs), or the
            connection is down.
        """
        if not self._connected():
            raise TransportError("not connected to QEMU")
        self._run()
        if self._next_jobs is None:
            self._next_jobs = asyncio.get_running_loop().create_future()
            self._next_jobs.add_done_callback(_retrieved)  # an asker that gave up leaves no warning behind
        self._wake.set()
        return await asyncio.shield(self._next_jobs)

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Poll the jobs often for the ``with`` block (a progress bar is up)."""
        self._followers += 1
        self._run()
        self._wake.set()
        try:
            yield
        finally:
            self._followers -= 1

    @property
    def active(self) -> bool:
        """Whether it is keeping anything current now (a background task runs)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Keep the run state and the jobs current from now on (the status toolbar)."""
        self._kept = True
        self._run()
        self._wake.set()

    def _run(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._keep_current())
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The keeping task ended (nothing left to keep, or it failed): an asker waits no more.

        Only the current task's end counts: an ask made between a task's end and this callback (a
        busy machine) started a new task, which serves it.
        """
        if task is not self._task:
            return
        waiter, self._next_jobs = self._next_jobs, None
        if waiter is not None and not waiter.done():
            failure = None if task.cancelled() else task.exception()
            waiter.set_exception(TransportError(f"the live state stopped: {failure or 'cancelled'}"))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- what the session tells (Subscriber) --------------------------------------

    def on_event(self, event: Event) -> None:
        name = event.get("event")  # (called for every event: the name is all most of them need)
        if name == "JOB_STATUS_CHANGE" or (isinstance(name, str) and name.startswith("BLOCK_JOB_")):
            self._jobs_stale = True
            self._wake.set()
            return
        state = RUN_STATE_EVENTS.get(name) if isinstance(name, str) else None
        if state is not None:
            self.run_state = state
            self._run_events += 1
            self._notify()

    def on_connection_changed(self) -> None:
        self.run_state, self.jobs, self._jobs_stale = None, (), True
        self._status_retry, self._status_due = POLL_SECONDS, 0.0
        self._notify()
        self._wake.set()

    # -- keeping current ------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _keep_current(self) -> None:
        """Until nothing is kept, followed or asked for (then a later ask starts it again)."""
        loop = asyncio.get_running_loop()
        while self._kept or self._followers or self._next_jobs is not None:
            self._wake.clear()
            if self._connected():
                if self._kept and self.run_state is None and loop.time() >= self._status_due:
                    await self._fetch_run_state(loop.time())
                if (self._kept and (self.jobs or self._jobs_stale)) or self._followers or self._next_jobs is not None:
                    await self._fetch_jobs()
            interval = FOLLOW_POLL_SECONDS if self._followers else POLL_SECONDS
            if self._kept and self.run_state is None:
                interval = min(interval, max(0.0, self._status_due - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def _fetch_run_state(self, now: float) -> None:
        """query-status; after a failure asked again in about 1, 2, 4 ... 32 seconds."""
        events_before = self._run_events
        try:
            status = await self._query("query-status")
        except CommandError as err:
            if err.error_class == "CommandNotFound":
                self.run_state = ""  # no VM here: nothing to show, nothing to ask
                return
            self._back_off(now)
            return
        except TransportError:
            self._back_off(now)
            return
        if self._run_events == events_before:  # else a STOP or RESUME since says more than this answer
            self.run_state = str(status.get("status")) if isinstance(status, dict) else ""
        self._status_retry = POLL_SECONDS
        self._notify()

    def _back_off(self, now: float) -> None:
        self._status_due, self._status_retry = now + self._status_retry, min(2 * self._status_retry, STATUS_RETRY_MAX)

    async def _fetch_jobs(self) -> None:
        waiter, self._next_jobs = self._next_jobs, None  # served by this query: it is sent after the ask
        self._jobs_stale = False
        try:
            reply = await self._query("query-jobs")
        except TransportError as err:
            self.jobs = ()
            if waiter is not None and not waiter.done():
                waiter.set_exception(err)
            return
        jobs = tuple(cast("JobInfo", j) for j in reply if isinstance(j, dict)) if isinstance(reply, list) else ()
        if jobs != self.jobs:
            self.jobs = jobs
            self._notify()
        if waiter is not None and not waiter.done():
            waiter.set_result(jobs)


def _retrieved(future: asyncio.Future[tuple[JobInfo, ...]]) -> None:
    if not future.cancelled():
        future.exception()
