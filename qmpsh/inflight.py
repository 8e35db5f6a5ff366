"""Requests on their way: ids, the table of requests sent and not answered, pipelining, timeouts.

Every request the user runs gets an id of qmpsh's own, a number (1, 2, ...: QEMU reads a request one
byte per read, so a short id saves it time on every command); the reply that comes back
with it is printed as its line's reply, with the user's own ``"id"`` (raw JSON) in place of ours.
A reply that comes after its line stopped waiting (Ctrl-C, a timeout at a terminal) is printed
as late, and told to ``on_late`` (the session's subscribers: ``/save`` keeps a late success); one
with an id nobody sent is noted and ignored. What the connection's state makes of a reply, a
timeout or a loss is the session's to decide.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from qmpsh.render import NOT_JSON_NOTE, Renderer
from qmpsh.syntax import Request
from qmpsh.transport import RequestId, TransportError, Unsendable, reply_id

if TYPE_CHECKING:
    from qmpsh.transport import Transport

PIPELINE_DEPTH = 32  # requests in flight at once when pipelining


class Settings(Protocol):
    """What requests read of the session's options (``session.Options``)."""

    @property
    def verbose(self) -> bool:
        """-v: show each request as it goes out."""

    @property
    def interactive(self) -> bool:
        """At a terminal: what is said about a request names no line."""

    @property
    def timeout(self) -> float | None:
        """Seconds of silence before a request stops waiting."""


class Flight:
    """One request sent (or about to be) and not answered yet."""

    def __init__(self, request: Request, lineno: int, exec_id: int, message: dict[str, object],
                 user_id: object = None) -> None:
        self.request = request
        self.lineno = lineno
        self.exec_id = exec_id  # qmpsh's id for it on the wire
        self.message = message  # what is sent, without any id
        self.user_id = user_id  # the "id" the user wrote in raw JSON, shown in place of ours
        self.abandoned = False  # the line stopped waiting (Ctrl-C, a timeout): its reply is late
        self.not_json = False  # the reply held NaN or Infinity: printed as strings, and the line fails


class Requests:
    """The requests a session has sent and not seen answered, and the replies the wire brings back."""

    def __init__(self, renderer: Renderer, options: Settings) -> None:
        self.renderer = renderer
        self.options = options
        self._ids = itertools.count(1)
        self._in_flight: dict[RequestId, Flight] = {}
        self._pipeline: deque[asyncio.Future[bool]] = deque()
        #: The requests waited for under --timeout, oldest first: when sent, on what, the reply's future.
        self._watched: dict[Flight, tuple[float, Transport, asyncio.Future[Mapping[str, object]]]] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        #: Told of a late reply once it is printed: its line had given up, but QEMU ran the command.
        self.on_late: Callable[[Request, Mapping[str, object]], None] = lambda request, reply: None

    def open(self, request: Request, lineno: int) -> Flight:
        """``request`` (checked) as a flight with an id of its own, awaited from now on."""
        message = dict(request.message)
        flight = Flight(request, lineno, next(self._ids), message, message.pop("id", None))
        self._in_flight[flight.exec_id] = flight
        return flight

    def send(self, transport: Transport, flight: Flight) -> asyncio.Future[Mapping[str, object]]:
        """Send ``flight``; the future gets its reply (printed by ``on_reply`` as it arrives), or why
        none came: see ``received``. Under --timeout the clock starts now: an idle prompt before
        the send never counts.

        :raise Unsendable: what the parser cannot see (a coerced value, a message too big for QEMU).
        :raise TransportError, OSError, EOFError: not connected.
        """
        try:
            waiter = transport.submit(flight.message, flight.exec_id)
        except (Unsendable, TransportError, OSError, EOFError):
            self._in_flight.pop(flight.exec_id, None)
            raise
        if self.options.timeout is not None:
            self._watch(transport, flight, waiter)
        return waiter

    def received(self, flight: Flight, waiter: asyncio.Future[Mapping[str, object]]) -> Mapping[str, object]:
        """The reply ``waiter`` (from ``send``, done) got.

        :raise TimeoutError: --timeout seconds of silence since the send; a server busy sending
            since (an event flood) is alive. The flight is abandoned: a reply that comes later is late.
        :raise TransportError, OSError, EOFError: the connection went.
        """
        self._watched.pop(flight, None)
        try:
            return waiter.result()
        except TimeoutError:  # an OSError, but the flight stays: its reply will be late
            raise
        except (TransportError, OSError, EOFError):
            self._in_flight.pop(flight.exec_id, None)
            raise

    async def reply(self, transport: Transport, flight: Flight) -> Mapping[str, object]:
        """Send ``flight`` and wait for its reply: ``send``, then ``received``, and their errors.

        A caller that stops waiting (Ctrl-C) abandons the flight: a reply that comes later is late.
        """
        waiter = self.send(transport, flight)
        try:
            await waiter
        except asyncio.CancelledError:
            self._watched.pop(flight, None)
            flight.abandoned = True
            waiter.cancel()
            raise
        except (TimeoutError, TransportError, OSError, EOFError):
            pass  # received() raises it again
        return self.received(flight, waiter)

    # -- the timeout: one watchdog for every request waited for -------------

    def _watch(self, transport: Transport, flight: Flight, waiter: asyncio.Future[Mapping[str, object]]) -> None:
        """Fail ``waiter`` with TimeoutError after --timeout seconds of silence since now.

        One timer serves every request (a timer per request costs more than the rest of its
        bookkeeping): it wakes at the oldest request's deadline and moves it on while the server is
        busy.
        """
        self._watched[flight] = (time.monotonic(), transport, waiter)
        if self._watchdog is None:
            self._arm(self._watched[flight])

    def _arm(self, oldest: tuple[float, Transport, asyncio.Future[Mapping[str, object]]]) -> None:
        sent, transport, _ = oldest
        assert self.options.timeout is not None
        deadline = max(sent, transport.last_activity) + self.options.timeout
        self._watchdog = asyncio.get_running_loop().call_at(deadline, self._bark)

    def _bark(self) -> None:
        """The oldest request's deadline: fail every request silent for --timeout seconds, rearm for the next."""
        self._watchdog = None
        timeout = self.options.timeout
        assert timeout is not None
        while self._watched:
            flight, oldest = next(iter(self._watched.items()))
            sent, transport, waiter = oldest
            if time.monotonic() - max(sent, transport.last_activity) < timeout:
                self._arm(oldest)
                return
            del self._watched[flight]
            if not waiter.done():
                flight.abandoned = True  # a reply that comes from now on is late
                waiter.set_exception(TimeoutError())

    def silence(self, flight: Flight) -> str:
        """What timed out, said after ``flight`` did: the first request still unanswered (pipelined,
        an earlier one than ``flight`` may be the one QEMU is stuck on)."""
        oldest = next(iter(self._in_flight.values()), flight)
        return f"no reply to {oldest.request.command} within {self.options.timeout:g} s"

    def where(self, flight: Flight) -> int | None:
        """The line to name in what is said about ``flight``: scripts name it, a terminal does not."""
        return None if self.options.interactive else flight.lineno

    # -- pipelining ----------------------------------------------------------

    def pipeline(self, outcome: asyncio.Future[bool]) -> list[asyncio.Future[bool]]:
        """Keep ``outcome`` (a request sent without waiting); once PIPELINE_DEPTH are in flight, the
        oldest half, to wait for now: replies come in order, so the script wakes once per half
        instead of once per reply."""
        self._pipeline.append(outcome)
        if len(self._pipeline) < PIPELINE_DEPTH:
            return []
        return [self._pipeline.popleft() for _ in range(PIPELINE_DEPTH // 2)]

    def next_pipelined(self) -> asyncio.Future[bool] | None:
        """The oldest outcome still to wait for, taken from the pipeline; None when it is empty."""
        return self._pipeline.popleft() if self._pipeline else None

    # -- wire taps (called in wire order by the connection) ----------------

    def on_sent(self, msg: Mapping[str, object]) -> None:
        """-v: a request as it goes out, with the user's id."""
        exec_id = reply_id(msg)
        flight = self._in_flight.get(exec_id) if exec_id is not None else None
        if flight is not None and self.options.verbose:
            self.renderer.document(as_user_sees(msg, flight))

    def on_reply(self, msg: Mapping[str, object]) -> None:
        """A reply off the wire: printed as its line's (late, if the line stopped waiting), or noted as
        nobody's. Replies to qmpsh's own queries never come here."""
        exec_id = reply_id(msg)
        flight = self._in_flight.pop(exec_id, None) if exec_id is not None else None
        if flight is None:
            self.renderer.ignored_reply(msg)
            return
        if flight.abandoned:
            self.renderer.late_reply(flight.request.command, flight.lineno)
        reply = as_user_sees(msg, flight)
        if not self.renderer.reply(reply, hmp=flight.request.form == "hmp"):
            flight.not_json = True
            self.renderer.line_error(flight.request.command, NOT_JSON_NOTE, self.where(flight))
        if "return" not in reply and not self.options.interactive:
            self.renderer.command_error(flight.request.command, reply, flight.lineno)
        if flight.abandoned:
            self.on_late(flight.request, msg)


def as_user_sees(msg: Mapping[str, object], flight: Flight) -> dict[str, object]:
    """The message with qmpsh's own id replaced by the user's (or removed)."""
    out = dict(msg)
    del out["id"]
    if flight.user_id is not None:
        out["id"] = flight.user_id
    return out
