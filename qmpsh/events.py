"""Events received from QEMU: the window ``/wait`` looks at, the ring ``/events``
shows, the filter that chooses which events print inline, and the subscriptions
through which the live state, the catalog and a progress bar follow a session.

``/wait`` looks at the events that arrived since the first command after the
previous ``/wait`` (so ``cmd; cmd; /wait A; /wait B`` sees both commands'
events, while an event that an older command caused cannot satisfy a later
``/wait``), then waits for new ones. A matched event is consumed.

Events about a job count only from its creation: a job id can be used again
once its job has gone (the live block operations document runs every job as
``job0``), and the new job's creation (JOB_STATUS_CHANGE ``created``) drops
the events of the old one from the window, so neither ``/wait`` nor ``/job``
can take the old job's end for the new job's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qmpsh.syntax import Builtin, Request

Event = Mapping[str, object]
Predicate = Callable[[Event], bool]

BACKLOG_LIMIT = 10_000


def data_matches(data: object, wanted: Mapping[str, object]) -> bool:
    """Whether every key=value in ``wanted`` (nested objects allowed) is in ``data``."""
    if not isinstance(data, Mapping):
        return False
    for key, value in wanted.items():
        if key not in data:
            return False
        if isinstance(value, Mapping):
            if not data_matches(data[key], value):
                return False
        elif data[key] != value and str(data[key]) != str(value):
            return False
    return True


def job_of(event: Event) -> str | None:
    """The id of the job an event is about: JOB_STATUS_CHANGE's id, BLOCK_JOB_*'s device (or id)."""
    name = str(event.get("event"))
    data = event.get("data")
    if not isinstance(data, Mapping) or not (name == "JOB_STATUS_CHANGE" or name.startswith("BLOCK_JOB_")):
        return None
    job = data.get("id") if name == "JOB_STATUS_CHANGE" else data.get("device", data.get("id"))
    return job if isinstance(job, str) else None


def about(job_id: str) -> Predicate:
    """Events about one job."""
    return lambda event: job_of(event) == job_id


def _created(event: Event) -> str | None:
    """The id of the job whose creation the event reports."""
    if event.get("event") != "JOB_STATUS_CHANGE":  # (first: called for every event, and most are not)
        return None
    data = event.get("data")
    return job_of(event) if isinstance(data, Mapping) and data.get("status") == "created" else None


def event_filter(name: str, wanted: Mapping[str, object]) -> Predicate:
    def accept(event: Event) -> bool:
        return event.get("event") == name and data_matches(event.get("data", {}), wanted)

    return accept


class EventLog:
    def __init__(self) -> None:
        self._backlog: deque[Event] = deque(maxlen=BACKLOG_LIMIT)
        self._waiters: list[tuple[Predicate, asyncio.Future[Event]]] = []
        self._waited = False

    def add(self, event: Event) -> None:
        job = _created(event)
        if job is not None and any(job_of(e) == job for e in self._backlog):
            self._backlog = deque((e for e in self._backlog if job_of(e) != job), maxlen=BACKLOG_LIMIT)
        for accept, future in self._waiters:
            if not future.done() and accept(event):
                future.set_result(event)
                return
        self._backlog.append(event)

    def command_sent(self) -> None:
        """A command starts a new window once a /wait has run."""
        if self._waited:
            self._backlog.clear()
            self._waited = False

    async def wait(self, accept: Predicate, timeout: float | None) -> Event:
        """The first matching event in the window, or the next one to arrive.

        Raises TimeoutError when none arrives in ``timeout`` seconds.
        """
        self._waited = True
        for event in self._backlog:
            if accept(event):
                self._backlog.remove(event)
                return event
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        waiter = (accept, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(waiter)


class EventRing:
    """The last ``size`` events, for ``/events``; counts what fell out."""

    def __init__(self, size: int = 1000) -> None:
        self.events: deque[Event] = deque(maxlen=size)
        self.dropped = 0

    def add(self, event: Event) -> None:
        if len(self.events) == self.events.maxlen:
            self.dropped += 1
        self.events.append(event)


class EventFilter:
    """Which events print inline: all, only some, or all but some (names may be globs)."""

    def __init__(self, mode: str = "all", names: tuple[str, ...] = ()) -> None:
        if mode not in ("all", "only", "hide"):
            raise ValueError(f"event filter must be all, only or hide, not {mode!r}")
        self.mode = mode
        self.names = tuple(names)

    @classmethod
    def parse(cls, spec: str) -> EventFilter:
        """``all``, ``only:NAME,NAME`` or ``hide:NAME,NAME`` (the --events option)."""
        mode, _, names = spec.partition(":")
        if mode not in ("all", "only", "hide"):
            raise ValueError(f"{spec!r} is not all, only:NAME[,NAME...] or hide:NAME[,NAME...]")
        if (mode == "all") == bool(names):
            raise ValueError("all takes no names" if names else f"{mode} needs names: {mode}:NAME[,NAME...]")
        return cls(mode, tuple(n for n in names.split(",") if n))

    def shows(self, name: str) -> bool:
        if self.mode == "all":
            return True
        hit = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names)
        return hit if self.mode == "only" else not hit

    def __str__(self) -> str:
        return self.mode if self.mode == "all" else f"{self.mode}:{','.join(self.names)}"


class Subscriber:
    """Follows a session: override what matters. Called on the event loop, in wire order; never
    blocks (a subscriber that needs QEMU's answer starts a task of its own)."""

    def on_event(self, event: Event) -> None:
        """An event arrived from QEMU (before it prints)."""

    def on_answered(self, request: Request, reply: Mapping[str, object]) -> None:
        """A request the user ran was answered (``reply`` as the wire had it, qmpsh's id and all)."""

    def on_builtin_done(self, builtin: Builtin, ok: bool) -> None:
        """A built-in the user ran is done; ``ok``: it succeeded."""

    def on_connection_changed(self) -> None:
        """A new connection (a reconnect, or /connect): what was learnt from the old one is stale."""


class Subscribers(Subscriber):
    """The subscribers of one session, told in the order they subscribed.

    Kept as a tuple, made anew when one comes or goes: telling them (once per event) copies nothing,
    and one that leaves while they are told is still told this time.
    """

    def __init__(self) -> None:
        self._all: tuple[Subscriber, ...] = ()

    def add(self, subscriber: Subscriber) -> None:
        self._all = (*self._all, subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        at = self._all.index(subscriber)
        self._all = self._all[:at] + self._all[at + 1:]

    @contextlib.contextmanager
    def subscribed(self, subscriber: Subscriber) -> Iterator[None]:
        """``subscriber`` follows the session for the ``with`` block."""
        self.add(subscriber)
        try:
            yield
        finally:
            self.remove(subscriber)

    def on_event(self, event: Event) -> None:
        for subscriber in self._all:
            subscriber.on_event(event)

    def on_answered(self, request: Request, reply: Mapping[str, object]) -> None:
        for subscriber in self._all:
            subscriber.on_answered(request, reply)

    def on_builtin_done(self, builtin: Builtin, ok: bool) -> None:
        for subscriber in self._all:
            subscriber.on_builtin_done(builtin, ok)

    def on_connection_changed(self) -> None:
        for subscriber in self._all:
            subscriber.on_connection_changed()
