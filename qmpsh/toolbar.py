"""The status toolbar: connection, QEMU version, VM run state, running jobs.

It only reads what the session's live state keeps (``live.LiveState``), so drawing it (once per
keystroke) never waits on QEMU; it redraws when that state changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from qmpsh.session import Session


def qemu_version(session: Session) -> str:
    version = session.transport.version
    qemu = version.get("qemu", {}) if version is not None else {}
    if not isinstance(qemu, dict) or not qemu:
        return ""
    return f"{qemu.get('major')}.{qemu.get('minor')}.{qemu.get('micro')}"


class Toolbar:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def version(self) -> str:
        return qemu_version(self.session)  # from the transport: current after a reconnect too

    def __call__(self) -> str:
        """The toolbar's text: plain text, so nothing is parsed on a redraw (one per keystroke)."""
        session = self.session
        if session.lost:  # the run state and the jobs of a QEMU we cannot see are unknown
            return " disconnected"
        transport = session.transport
        parts = [transport.label if transport.domain is not None else "connected"]  # a socket: its address was given
        version = self.version
        if version:
            parts.append(f"QEMU {version}")
        live = session.live
        if live.run_state:
            parts.append(f"VM {live.run_state}")
        for job_id, kind, status, percent in map(job_row, live.jobs):
            parts.append(f"{job_id} {kind} {status}" + (f" {percent}%" if percent is not None else ""))
        return " " + " │ ".join(parts)

    async def keep_current(self, redraw: Callable[[], None]) -> None:
        """Redraw whenever the live state changes (it is kept current from now on)."""
        live = self.session.live
        live.start()
        while True:
            await live.changed()
            redraw()


def job_row(job: Mapping[str, object]) -> tuple[str, str, str, int | None]:
    """A query-jobs entry (a JobInfo, read without trusting it) as (id, type, status, percent done)."""
    total, done = job.get("total-progress"), job.get("current-progress")
    percent = int(100 * done / total) if isinstance(total, int) and total and isinstance(done, int) else None
    return str(job.get("id")), str(job.get("type")), str(job.get("status")), percent
