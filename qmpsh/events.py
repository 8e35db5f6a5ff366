"""Events received from QEMU, kept for ``/wait``.

``/wait`` looks at the events that arrived since the first command after the
previous ``/wait`` (so ``cmd; cmd; /wait A; /wait B`` sees both commands'
events, while an event that an older command caused cannot satisfy a later
``/wait``), then waits for new ones. A matched event is consumed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping

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
