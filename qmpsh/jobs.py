"""``/job`` and ``/jobs``: follow block jobs as they run.

``/job JOB-ID`` waits until the job is ready (mirror, active commit) or has
concluded. At a terminal it draws a progress bar (fed by ``query-jobs``
polled a few times a second, its status by the job's own events), and every
event prints above the bar as it arrives, the job's own too; a final event
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
from typing import TYPE_CHECKING, cast

from qmpsh.events import Event, Predicate, about
from qmpsh.syntax import Builtin

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON, BlockJobInfo, JobInfo, JSONObject
    from qmpsh.session import Session

POLL_SECONDS = 0.25
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


def find(jobs: JSON, job_id: str) -> JobInfo | None:
    """``job_id``'s entry in a query-jobs reply."""
    if isinstance(jobs, list):
        for job in jobs:
            if isinstance(job, dict) and job.get("id", job.get("device")) == job_id:
                return cast("JobInfo", job)
    return None


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


class ProgressBar:
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

    def _watch(self, event: Event) -> None:
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
        renderer.sink, self.session.watch = self.view.print, self._watch
        try:
            with self.view:
                yield
        finally:
            renderer.sink, self.session.watch = None, None


async def follow(session: Session, cmd: Builtin) -> bool:
    """Follow a job until it is ready or has concluded: a progress bar at a terminal, its end in scripts."""
    if len(cmd.words) != 1 or set(cmd.args) - {"timeout"}:
        session.renderer.error("usage: /job JOB-ID [timeout=SECONDS]")
        return False
    job_id = cmd.words[0]
    timeout = cmd.args.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        session.renderer.error(f"/job: timeout must be a number of seconds, not {timeout!r}")
        return False
    end = asyncio.ensure_future(session.events.wait(ending(job_id, session.ring.events),
                                                    float(timeout) if timeout else None))
    bar = ProgressBar(session, job_id) if session.options.interactive else None
    info: JobInfo | None = None
    concluded_before = False  # its final event came before this /job: polling found it concluded
    already_ready = False  # ready before this /job: only its conclusion ends the wait
    try:
        with bar.shown() if bar else contextlib.nullcontext():
            while not end.done():
                latest = find(await session.query("query-jobs"), job_id)
                if latest is None and info is None and not end.done():
                    await asyncio.wait([end], timeout=SETTLE_SECONDS)  # its ending may be in the window
                    if not end.done():
                        session.renderer.error(f"/job: no job '{job_id}' (see /jobs)")
                        return False
                if latest is not None:
                    if bar:
                        bar.update(latest)
                    status = latest.get("status")
                    if status in ("ready", "concluded") and not end.done():
                        # The job's events came before this reply: one in the window ends /job in a moment.
                        await asyncio.wait([end], timeout=SETTLE_SECONDS)
                    if status == "concluded" and not end.done():
                        concluded_before, info = True, latest
                        break
                    if status == "ready" and info is None and not end.done():
                        already_ready = True
                        session.renderer.note(f"/job: {job_id} is already ready; following it until it concludes "
                                              f"(block-job-complete or block-job-cancel device={job_id})")
                    info = latest
                await asyncio.wait([end], timeout=POLL_SECONDS)
        event = None if concluded_before else end.result()
    except TimeoutError:
        what = "not concluded" if already_ready else "not ready or concluded"
        session.renderer.error(f"/job: {job_id} {what} within {timeout:g} s; it goes on")
        return False
    finally:
        end.cancel()
    if event is None:
        assert info is not None
        if info.get("error"):
            session.renderer.error(f"/job: {job_id} failed: {info['error']}")
            return False
        if bar:
            session.renderer.note(f"{job_id} has concluded")
        return True
    if event.get("event") == "JOB_STATUS_CHANGE":
        info = find(await session.query("query-jobs"), job_id) or info
    if bar and not any(seen is event for seen in bar.seen):  # it came before /job: not printed since
        session.renderer.event(event)
    why = failure(event, info)
    if why:
        session.renderer.error(f"/job: {job_id} failed: {why}")
        return False
    if event.get("event") == "BLOCK_JOB_READY" and session.options.interactive:
        session.renderer.note(f"{job_id} is ready: block-job-complete device={job_id} pivots, "
                              f"block-job-cancel device={job_id} keeps the copy")
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
