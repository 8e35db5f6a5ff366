"""``/job`` and ``/jobs``: follow block jobs as they run.

``/job JOB-ID`` waits until the job is ready (mirror, active commit) or has
concluded. At a terminal it draws a progress bar (fed by the live state, which
polls ``query-jobs`` a few times a second while /job follows; its status by the
job's own events), and every event prints above the bar as it arrives, the job's own too; a final event
that came before ``/job`` is printed again at the end, as the answer. In
scripts there is no bar: the final event is on stdout already, in arrival
order with everything else. A job that ends in error fails the line.

A job whose final event came before ``/job`` (it was consumed by an earlier
``/wait`` or ``/job``, or left the window) is seen as concluded by polling.
Polling cannot tell "ready" apart from "ready, and asked to complete a moment
ago" (QEMU reports ``ready`` until the job has left that state), so a job
found already ready is followed until it concludes, with a note saying so.
A BLOCK_JOB_READY still in the window is no end if the job's completion came
after it (it was completed while the user watched the toolbar).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING, Any, cast

from qmpsh.events import Event, Predicate, Subscriber, about
from qmpsh.syntax import Builtin

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON, BlockJobInfo, JobInfo, JSONObject
    from qmpsh.session import Session

SETTLE_SECONDS = 0.1  # how long an event already received may take to end the wait for it


def _final(event: Event) -> bool:
    """Whether an event about a job says it is over (not merely ready)."""
    name = event.get("event")
    if name == "JOB_STATUS_CHANGE":
        data = event["data"]
        return isinstance(data, Mapping) and data.get("status") == "concluded"
    return name in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")


def ending(job_id: str, recent: Iterable[Event] = ()) -> Predicate:
    """The event that ends /job: ready, completed or cancelled; concluded for non-block jobs.

    A BLOCK_JOB_READY that ``recent`` events (in arrival order, the same objects) show
    was followed by the job's end is stale: the job has moved on (block-job-complete).
    """
    mine = about(job_id)

    def accept(event: Event) -> bool:
        if not mine(event):
            return False
        if event.get("event") == "BLOCK_JOB_READY":
            return not _over_since(event)
        return _final(event)

    def _over_since(event: Event) -> bool:
        seen = False
        for later in recent:
            if later is event:
                seen = True
            elif seen and mine(later) and _final(later):
                return True
        return False

    return accept


def find(jobs: Iterable[JobInfo], job_id: str) -> JobInfo | None:
    """``job_id``'s entry in query-jobs' list."""
    return next((job for job in jobs if job.get("id") == job_id), None)


def failure(event: Event, info: Mapping[str, object] | None) -> str | None:
    """Why a job's final event means it failed, or None."""
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    if data.get("error"):
        return str(data["error"])
    if event.get("event") == "BLOCK_JOB_CANCELLED":
        return "the job was cancelled"
    if info and info.get("error"):
        return str(info["error"])
    return None


class ProgressBar(Subscriber):
    """A progress bar at the terminal, fed by query-jobs and the job's events; the session's output prints above it."""

    def __init__(self, session: Session, job_id: str) -> None:
        from qmpsh.views import ProgressView

        self.session = session
        self.view = ProgressView(job_id, session.renderer.colour)
        self.job_id = job_id
        self.kind = ""
        self.mine = about(job_id)
        self.seen: list[Event] = []  # the job's events that arrived (and printed) while the bar was up

    def update(self, info: Mapping[str, object]) -> None:
        total = info.get("total-progress", info.get("len"))
        done = info.get("current-progress", info.get("offset"))
        self.kind = str(info.get("type", self.kind))
        self.view.update(f"{self.job_id} {self.kind} {info.get('status', '')}",
                         total=float(total) if isinstance(total, (int, float)) and total else None,
                         completed=float(done) if isinstance(done, (int, float)) else 0)

    def on_event(self, event: Event) -> None:
        if not self.mine(event):
            return
        self.seen.append(event)
        data = event.get("data")
        if isinstance(data, Mapping) and data.get("status"):
            self.view.update(f"{self.job_id} {self.kind} {data['status']}")

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        sys.stdout.flush()
        renderer = self.session.renderer
        renderer.sink = self.view.print
        try:
            with self.view, self.session.subscribers.subscribed(self):
                yield
        finally:
            renderer.sink = None


class Watch(Enum):
    """Where /job stands with the job it follows, from what query-jobs says."""

    UNSEEN = auto()  # not listed yet: its end may still be in the window, or it never was
    RUNNING = auto()  # listed, neither ready nor concluded when first seen
    READY_BEFORE = auto()  # ready when first seen: only its conclusion ends the wait
    CONCLUDED_BEFORE = auto()  # concluded, its final event consumed before /job: query-jobs is the answer
    MISSING = auto()  # never listed, and no end of it came


@dataclass
class _Followed:
    """A job /job follows: what query-jobs said of it last, and where /job stands."""

    job_id: str
    end: asyncio.Future[Event]  # the event that ends /job
    state: Watch = Watch.UNSEEN
    info: JobInfo | None = None

    async def settle(self) -> None:
        """Give an event already received a moment to end the wait."""
        if not self.end.done():
            await asyncio.wait([self.end], timeout=SETTLE_SECONDS)

    async def seen(self, latest: JobInfo | None) -> None:
        """Take in what query-jobs says of the job now."""
        if latest is None:
            if self.state is Watch.UNSEEN:
                await self.settle()  # its ending may be in the window
                self.state = Watch.UNSEEN if self.end.done() else Watch.MISSING
            return
        status = latest.get("status")
        if status in ("ready", "concluded"):
            await self.settle()  # the job's events came before this reply: one in the window ends /job
        if not self.end.done():
            if status == "concluded":
                self.state = Watch.CONCLUDED_BEFORE
            elif self.state is Watch.UNSEEN:
                self.state = Watch.READY_BEFORE if status == "ready" else Watch.RUNNING
        self.info = latest

    @property
    def over(self) -> bool:
        return self.end.done() or self.state in (Watch.CONCLUDED_BEFORE, Watch.MISSING)


def _job_arguments(session: Session, cmd: Builtin) -> tuple[str, float | None] | None:
    """/job's job id and timeout, or None when the line is wrong (said)."""
    if len(cmd.words) != 1 or set(cmd.args) - {"timeout"}:
        session.renderer.error("usage: /job JOB-ID [timeout=SECONDS]")
        return None
    timeout = cmd.args.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        session.renderer.error(f"/job: timeout must be a number of seconds, not {timeout!r}")
        return None
    return cmd.words[0], float(timeout) if timeout else None


async def follow(session: Session, cmd: Builtin) -> bool:
    """Follow a job until it is ready or has concluded: a progress bar at a terminal, its end in scripts."""
    arguments = _job_arguments(session, cmd)
    if arguments is None:
        return False
    job_id, timeout = arguments
    job = _Followed(job_id, asyncio.ensure_future(session.events.wait(ending(job_id, session.ring.events), timeout)))
    bar = ProgressBar(session, job_id) if session.options.interactive else None
    live = session.live
    try:
        with bar.shown() if bar else contextlib.nullcontext(), live.following():
            jobs = await live.fresh_jobs()  # asked after the command that started the job was answered
            while True:
                latest = find(jobs, job_id)
                if bar and latest is not None:
                    bar.update(latest)
                before = job.state
                await job.seen(latest)
                if before is Watch.UNSEEN and job.state is Watch.READY_BEFORE:
                    session.renderer.note(f"/job: {job_id} is already ready; following it until it concludes "
                                          f"(block-job-complete or block-job-cancel device={job_id})")
                if job.over:
                    break
                changed = asyncio.ensure_future(live.changed())
                either: list[asyncio.Future[Any]] = [job.end, changed]
                try:
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also on Ctrl-C
                    changed.cancel()
                jobs = live.jobs
        event = job.end.result() if job.end.done() else None
    except TimeoutError:
        what = "not concluded" if job.state is Watch.READY_BEFORE else "not ready or concluded"
        session.renderer.error(f"/job: {job_id} {what} within {timeout:g} s; it goes on")
        return False
    finally:
        job.end.cancel()
    if event is None:
        return _concluded_before(session, job, bar is not None)
    return await _ended(session, job, event, bar)


def _concluded_before(session: Session, job: _Followed, shown: bool) -> bool:
    """The verdict on a job whose end /job did not see: from query-jobs."""
    if job.state is Watch.MISSING:
        session.renderer.error(f"/job: no job '{job.job_id}' (see /jobs)")
        return False
    assert job.info is not None
    if job.info.get("error"):
        session.renderer.error(f"/job: {job.job_id} failed: {job.info['error']}")
        return False
    if shown:
        session.renderer.note(f"{job.job_id} has concluded")
    return True


async def _ended(session: Session, job: _Followed, event: Event, bar: ProgressBar | None) -> bool:
    """The verdict on a job from the event that ended /job."""
    info: Mapping[str, object] | None = job.info
    if event.get("event") == "JOB_STATUS_CHANGE":
        info = find(await session.live.fresh_jobs(), job.job_id) or info
    if bar and not any(seen is event for seen in bar.seen):  # it came before /job: not printed since
        session.renderer.event(event)
    why = failure(event, info)
    if why:
        session.renderer.error(f"/job: {job.job_id} failed: {why}")
        return False
    if event.get("event") == "BLOCK_JOB_READY" and session.options.interactive:
        session.renderer.note(f"{job.job_id} is ready: block-job-complete device={job.job_id} pivots, "
                              f"block-job-cancel device={job.job_id} keeps the copy")
    return True


def _objects(reply: JSON) -> list[JSONObject]:
    """The objects in a reply that is a list of them (anything else in it is skipped)."""
    return [item for item in reply if isinstance(item, dict)] if isinstance(reply, list) else []


async def list_jobs(session: Session, cmd: Builtin) -> bool:
    """A table of the current jobs, with the speed of block jobs."""
    from qmpsh.views import JobRow, JobsTable

    jobs, block_jobs = await asyncio.gather(session.query("query-jobs"), session.query("query-block-jobs"))
    speeds = {j.get("device"): j.get("speed") for j in cast("list[BlockJobInfo]", _objects(block_jobs))}
    rows: list[JobRow] = []
    for job in cast("list[JobInfo]", _objects(jobs)):
        total, done = job.get("total-progress") or 0, job.get("current-progress") or 0
        row: JobRow = {"id": job.get("id"), "type": job.get("type"), "status": job.get("status"),
                       "progress": round(100 * done / total, 1) if total else None, "speed": speeds.get(job.get("id"))}
        if job.get("error"):
            row["error"] = job["error"]
        rows.append(row)
    session.renderer.show(JobsTable(rows))
    return True
