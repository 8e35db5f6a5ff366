"""The status toolbar: connection, QEMU version, VM run state, running jobs.

It only reads state kept in memory; a background task refreshes job progress
once a second while there are jobs, so drawing it never waits on QEMU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from qmpsh.catalog import Source
from qmpsh.session import Session
from qmpsh.transport import CommandError, TransportError

POLL_SECONDS = 1.0
STATUS_RETRY_MAX = 32.0  # seconds: the longest wait before asking again for a run state that failed


def qemu_version(session: Session) -> str:
    version = session.transport.version
    qemu = version.get("qemu", {}) if version is not None else {}
    if not isinstance(qemu, dict) or not qemu:
        return ""
    return f"{qemu.get('major')}.{qemu.get('minor')}.{qemu.get('micro')}"


class Toolbar:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.jobs: list[tuple[str, str, str, int | None]] = []  # id, type, status, percent

    @property
    def version(self) -> str:
        return qemu_version(self.session)  # from the transport: current after a reconnect too

    def __call__(self) -> str:
        """The toolbar's text: plain text, so nothing is parsed on a redraw (one per keystroke)."""
        session = self.session
        if session.lost:  # the run state and the jobs of a QEMU we cannot see are unknown
            self.jobs = []
            return " disconnected"
        transport = session.transport
        parts = [transport.label if transport.domain is not None else "connected"]  # a socket: its address was given
        version = self.version
        if version:
            parts.append(f"QEMU {version}")
        if session.vm_status:
            parts.append(f"VM {session.vm_status}")
        for job_id, kind, status, percent in self.jobs:
            parts.append(f"{job_id} {kind} {status}" + (f" {percent}%" if percent is not None else ""))
        return " " + " │ ".join(parts)

    async def keep_current(self, redraw: Callable[[], None]) -> None:
        """The run state when it is not known (at start, after a reconnect), job progress while jobs exist.

        A server without ``query-status`` (qemu-storage-daemon) has no run state: it is not asked
        again until a reconnect. Other failures are retried after about 1, 2, 4 ... 32 seconds,
        and at once on a new connection.
        """
        retry_in, next_try = POLL_SECONDS, 0.0
        loop = asyncio.get_running_loop()
        transport = self.session.transport
        connection = transport.connections  # a new number with every connection
        while True:
            if self.session.transport is not transport or transport.connections != connection:  # also /connect
                transport = self.session.transport
                connection, retry_in, next_try = transport.connections, POLL_SECONDS, 0.0
            if self.session.vm_status is None and transport.running and loop.time() >= next_try:
                try:
                    status = await self.session.query("query-status")
                    self.session.vm_status = str(status.get("status")) if isinstance(status, dict) else ""
                    retry_in = POLL_SECONDS
                    redraw()
                except CommandError as err:
                    if err.error_class == "CommandNotFound":
                        self.session.vm_status = ""  # no VM here: nothing to show, nothing to ask
                    else:
                        next_try, retry_in = loop.time() + retry_in, min(2 * retry_in, STATUS_RETRY_MAX)
                except TransportError:
                    next_try, retry_in = loop.time() + retry_in, min(2 * retry_in, STATUS_RETRY_MAX)
            catalog = self.session.catalog
            has_jobs = bool(self.jobs) or bool(catalog and catalog.snapshot.get(Source.JOB))
            if has_jobs and transport.running:
                try:
                    jobs = await self.session.query("query-jobs")
                except TransportError:
                    jobs = []
                entries = jobs if isinstance(jobs, list) else []
                self.jobs = [job_row(j) for j in entries if isinstance(j, dict)]
                redraw()
            await asyncio.sleep(POLL_SECONDS)


def job_row(job: Mapping[str, object]) -> tuple[str, str, str, int | None]:
    """A query-jobs entry (a JobInfo, read without trusting it) as (id, type, status, percent done)."""
    total, done = job.get("total-progress"), job.get("current-progress")
    percent = int(100 * done / total) if isinstance(total, int) and total and isinstance(done, int) else None
    return str(job.get("id")), str(job.get("type")), str(job.get("status")), percent
