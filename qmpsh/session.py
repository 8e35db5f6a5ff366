"""A ``Session`` runs input against one QMP connection.

The interactive and the scripted loop both drive ``await session.run(text)``;
everything a line does (parse, send, print the reply and events in wire
order, built-ins, bookkeeping of failures) happens here, once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar, cast

from qmpsh.events import EventFilter, EventLog, EventRing, Subscribers
from qmpsh.live import LiveState
from qmpsh.render import Renderer
from qmpsh.syntax import Builtin, Item, ParseError, Reader, Request, Skipped
from qmpsh.transport import CommandError, Transport, TransportError, Unsendable, WireTap, reply_id

if TYPE_CHECKING:  # imported where used: a script without key=value arguments never needs them
    from qmpsh.jsontypes import JSON, SchemaInfo
    from qmpsh.launch import LaunchedQemu
    from qmpsh.schema import Schema
    from qmpsh.targets import DomainNames

T = TypeVar("T")

#: QMP commands that every QEMU has and that need no argument. A line naming one of them and nothing
#: else is sent without loading the schema (a script of query-status lines never pays for it); any
#: other line, with arguments or not, is checked against the schema, loaded once when first needed.
NO_ARGUMENT_NEEDED = frozenset({
    "qmp_capabilities", "cont", "stop", "quit", "system_reset", "system_powerdown", "system_wakeup",
    "nbd-server-stop", "migrate_cancel", "query-status", "query-name", "query-uuid", "query-version", "query-kvm",
    "query-commands", "query-qmp-schema", "query-target", "query-machines", "query-current-machine",
    "query-cpus-fast", "query-hotpluggable-cpus", "query-iothreads", "query-chardev", "query-mice", "query-balloon",
    "query-pci", "query-memdev", "query-memory-devices", "query-block", "query-blockstats", "query-block-jobs",
    "query-jobs", "query-named-block-nodes", "query-block-exports", "query-migrate", "query-migrate-capabilities",
    "query-migrate-parameters", "query-fdsets", "query-dump", "query-display-options",
})

_ID_PREFIX = "qmpsh-"
_NOT_JSON = "NaN or Infinity (not JSON) printed as strings"
PIPELINE_DEPTH = 32  # requests in flight at once when pipelining


@dataclass
class Options:
    verbose: bool = False
    hmp: bool = False
    exit_on_error: bool = False
    interactive: bool = False
    use_schema: bool = True  # check and coerce key=value arguments against the live schema
    event_filter: EventFilter = field(default_factory=EventFilter)  # which events print inline
    timeout: float | None = None  # seconds to wait for a reply (and for the greeting)
    reconnect: bool = False  # interactive: reconnect by itself, with backoff, when the connection is lost
    pipeline: bool = False  # scripts: send requests without waiting for earlier replies
    libvirt: bool = False  # --domain: the session uses libvirt (Tab lists its domains)
    libvirt_uri: str | None = None  # -c: libvirt's URI for --domain, /domains and /connect NAME


@dataclass
class _InFlight:
    request: Request
    lineno: int
    user_id: object = None  # the "id" the user wrote in raw JSON, shown in place of ours
    abandoned: bool = False  # the user stopped waiting (Ctrl-C)
    not_json: bool = False  # the reply held NaN or Infinity: printed as strings, and the line fails


class Session:
    def __init__(self, renderer: Renderer, options: Options, transport: Transport,
                 launched: LaunchedQemu | None = None, tap: WireTap | None = None) -> None:
        from qmpsh.commands import BUILTINS  # commands import Session for typing

        self.renderer = renderer
        self.options = options
        self.launched = launched  # the QEMU qmpsh started (--launch): it stops when the session ends
        self.transport = transport  # the connection to QEMU: messages come back through _on_sent, _on_received
        self.tap = tap  # --logfile: for the transports /connect makes
        self.domain_names: DomainNames | None = None  # for Tab after /connect: made by targets when needed
        transport.attach(self._on_sent, self._on_received)
        self.reader = Reader(BUILTINS, hmp=options.hmp)
        self.events = EventLog()
        self.ring = EventRing()
        self.subscribers = Subscribers()  # the catalog, a progress bar ...: told of events and answered commands
        self.live = LiveState(self.query, lambda: self.transport.running and not self.lost)  # run state, jobs
        self.subscribers.add(self.live)
        self.failed = False  # some line failed: exit status 1 in scripts
        self.finished = False  # quit or /quit: the session is over
        self.lost = False  # the connection went away
        self._quit_sent = False  # QEMU closing the socket after quit is the expected end
        self._losing = False  # lose() is finding out why the connection ended
        self.commands: list[str] = []  # from query-commands, for completion
        self.schema: Schema | None = None  # None until loaded, or when the server has none
        self._schema_task: asyncio.Task[Schema | None] | None = None
        self._ids = itertools.count(1)
        self._in_flight: dict[str, _InFlight] = {}
        self._pipeline: deque[Awaitable[bool]] = deque()
        self.switched = asyncio.Event()  # set when switch() puts another transport in place

    # -- the connection ----------------------------------------------------------

    async def connect(self, wait: float = 0.0) -> None:
        """Connect the transport; raises transport.ConnectFailure."""
        await self.transport.open(self.options.timeout, wait)
        self.lost = False

    async def reconnect(self) -> None:
        """Connect again to the same place and rebuild what was learnt from the old QEMU."""
        await self.transport.close()
        await self.connect()
        await self._forget()

    async def switch(self, transport: Transport) -> None:
        """Use ``transport`` in place of the current one, once it is open; the old one is closed then.

        :raise ConnectFailure: ``transport`` did not open; the current one is still in use, as it was.
        """
        transport.attach(self._on_sent, self._on_received)
        try:
            await transport.open(self.options.timeout)
        except asyncio.CancelledError:  # Ctrl-C while connecting: nothing half open is left behind
            await transport.close()
            raise
        old, self.transport = self.transport, transport
        self.lost = False
        self.switched.set()
        self.switched = asyncio.Event()
        await old.close()
        self.events = EventLog()  # a /wait must not take the old QEMU's events
        await self._forget()

    async def _forget(self) -> None:
        """Rebuild what was learnt from the QEMU before: schema, run state, commands, live values."""
        self.schema, self._schema_task = None, None
        self.subscribers.on_connection_changed()
        if self.options.interactive:  # completion and the toolbar need them again
            self.start_loading_schema()
            await self.load_commands()
            await self.load_commands()

    async def load_commands(self) -> None:
        try:
            reply = await self.query("query-commands")
        except TransportError:
            return
        if isinstance(reply, list):
            self.commands = sorted(str(c["name"]) for c in reply if isinstance(c, dict) and "name" in c)

    async def lose(self, what: str) -> None:
        """The connection broke: say why, once (pipelined requests all notice at the same moment)."""
        if self.lost or self.finished or self._losing:
            return
        self._losing = True
        try:
            reason = await self.transport.close() or "the server closed the connection"
            ended = await self.launched.ended(within=1.0) if self.launched is not None else None
        finally:
            self._losing = False
        reason = f"the QEMU qmpsh launched {ended}" if ended else reason
        self.connection_lost(f" {what}: {reason}" if what else f": {reason}")

    @property
    def qemu_gone(self) -> bool:
        """The QEMU qmpsh launched has exited: there is nothing to reconnect to."""
        return self.launched is not None and self.launched.exited()

    @property
    def quit_sent(self) -> bool:
        """The QMP command quit was sent and accepted: QEMU is stopping."""
        return self._quit_sent

    async def unless_lost(self, work: Awaitable[T]) -> T:
        """What ``work`` (a /wait, a /job) comes to, unless the connection goes first: then it is
        stopped and EOFError raised (run_item reports the loss)."""
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self._until_lost())
        try:
            await asyncio.wait([task, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():  # lost, or Ctrl-C: let it clean up (a progress bar) before going on
                task.cancel()
                await asyncio.wait([task])
        if task.cancelled():
            raise EOFError("the connection was lost")
        return task.result()

    async def _until_lost(self) -> None:
        while self.transport.running:
            await self.transport.runstate_changed()

    async def connection_changed(self) -> None:
        """Wait until the connection's state changes, or another transport takes its place."""
        changed = asyncio.ensure_future(self.transport.runstate_changed())
        switched = asyncio.ensure_future(self.switched.wait())
        try:
            await asyncio.wait([changed, switched], return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            switched.cancel()

    # -- the schema ------------------------------------------------------------

    def start_loading_schema(self) -> None:
        if self._schema_task is None:
            self._schema_task = asyncio.ensure_future(self._load_schema())

    async def ensure_schema(self) -> Schema | None:
        """The schema, loaded on first need (scripts that never need it never pay for it)."""
        self.start_loading_schema()
        assert self._schema_task is not None
        return await asyncio.shield(self._schema_task)

    async def _load_schema(self) -> Schema | None:
        from qmpsh.schema import Schema

        try:
            reply = await self.query("query-qmp-schema")
        except CommandError:
            reply = None
        except TransportError:  # the connection went: no answer either way, ask again next time
            self._schema_task = None
            return None
        schema = Schema(cast("list[SchemaInfo]", reply)) if isinstance(reply, list) else None
        if not schema:
            self.renderer.note("no usable QMP schema from the server: arguments are sent unchecked")
            schema = None
        self.schema = schema
        return schema

    async def check(self, request: Request, lineno: int) -> Request | None:
        """The request with its command and arguments checked and coerced by the schema; None if wrong."""
        args = request.message.get("arguments")
        if (request.force or not self.options.use_schema or request.form not in ("kv", "transaction")
                or not isinstance(args, dict)):
            return request
        if not args and self.schema is None and request.command in NO_ARGUMENT_NEEDED:
            return request  # right as it is: no need to load the schema for it
        schema = await self.ensure_schema()
        if schema is None:
            return request
        from qmpsh.schema import SchemaError  # loaded with the schema

        try:
            coerced = schema.coerce_arguments(request.command, args)
        except SchemaError as err:
            column = _column_for(request, err.path)
            hint = " (a leading ! sends it anyway)" if request.form == "kv" else ""
            self.fail_parse(ParseError(f"{err}{hint}", request.source, column, lineno))
            return None
        return replace(request, message={**request.message, "arguments": coerced})

    # -- running input -------------------------------------------------------

    @property
    def stopped(self) -> bool:
        lost = self.lost and not self.options.interactive  # at a terminal /reconnect can bring it back
        return (self.finished or lost or (self.failed and self.options.exit_on_error)
                or self.renderer.stdout_error is not None)  # nobody reads what a script would print

    async def run(self, text: str) -> bool:
        """Run a complete chunk of input (a line or a paste); False if any item failed."""
        return await self.run_items(self.reader.feed(text).items)

    async def run_items(self, items: list[Item], first_lineno: int = 1) -> bool:
        """Run parsed items in order, stopping once the session is stopped.

        With ``options.pipeline`` a request is sent without waiting for the
        replies before it (QMP answers in order, and replies print as they
        arrive); anything else is a barrier that waits for them all first.
        """
        ok = True
        for item in items:
            if self.stopped:
                break
            if self.options.pipeline and isinstance(item, Request) and item.command != "quit":
                outcome = await self.submit(item, first_lineno + item.lineno - 1)
                if outcome is None:  # rejected before sending
                    ok, self.failed = False, True
                    continue
                self._pipeline.append(outcome)
                if len(self._pipeline) >= PIPELINE_DEPTH:
                    ok = await self._settle(self._pipeline.popleft()) and ok
                continue
            ok = await self.drain() and ok
            if self.stopped:
                break
            ok = await self._settle(self.run_item(item, first_lineno)) and ok
        return ok

    async def drain(self) -> bool:
        """Wait for every pipelined request's reply."""
        ok = True
        while self._pipeline:
            ok = await self._settle(self._pipeline.popleft()) and ok
        return ok

    async def _settle(self, outcome: Awaitable[bool]) -> bool:
        if await outcome:
            return True
        self.failed = True
        return False

    async def run_item(self, item: Item, first_lineno: int = 1) -> bool:
        lineno = first_lineno + item.lineno - 1
        if isinstance(item, ParseError):
            self.fail_parse(item, first_lineno)
            return False
        if isinstance(item, Skipped):
            self.renderer.note(f"skipped {item.reason}" + ("" if self.options.interactive else f" (line {lineno})"))
            return True
        if isinstance(item, Builtin):
            from qmpsh.commands import BUILTINS

            lost_before = self.lost
            try:
                return await BUILTINS[item.name](self, item)
            except CommandError as err:
                self.renderer.error(f"/{item.name}: {err.error_class}: {err.desc}")
                return False
            except (TransportError, OSError, EOFError):
                if lost_before:  # said when it happened; this line could not work without it
                    self.renderer.error(f"/{item.name}: not connected to QEMU: /reconnect first")
                else:
                    await self.lose(f"during /{item.name}")
                return False
        return await self.execute(item, lineno)

    def fail_parse(self, error: ParseError, first_lineno: int = 1) -> None:
        error.lineno += first_lineno - 1
        self.renderer.parse_error(error, with_line=not self.options.interactive or error.lineno > 1)

    async def execute(self, request: Request, lineno: int = 1) -> bool:
        """Check and send one request and wait for its reply (printed by _on_received as it arrives)."""
        sent = await self._send(request, lineno)
        return await self._outcome(*sent) if sent is not None else False

    async def submit(self, request: Request, lineno: int = 1) -> asyncio.Future[bool] | None:
        """Check and send one request without waiting for its reply (None: rejected, nothing sent)."""
        sent = await self._send(request, lineno)
        return asyncio.ensure_future(self._outcome(*sent)) if sent is not None else None

    async def _send(self, request: Request, lineno: int) -> tuple[Request, dict[str, object], str, _InFlight] | None:
        if self.lost:
            self.renderer.error("not connected to QEMU" + (": /reconnect first" if self.options.interactive else ""))
            return None
        checked = await self.check(request, lineno)
        if checked is None:
            return None
        message = dict(checked.message)
        exec_id = f"{_ID_PREFIX}{next(self._ids)}"
        flight = _InFlight(checked, lineno, message.pop("id", None))
        self._in_flight[exec_id] = flight
        self.events.command_sent()
        self.renderer.since = time.time()
        self._quit_sent = checked.command == "quit"
        return checked, message, exec_id, flight

    async def _outcome(self, request: Request, message: dict[str, object], exec_id: str, flight: _InFlight) -> bool:
        try:
            reply = await self._reply(self.transport.submit(message, exec_id))
        except Unsendable as err:  # what the parser cannot see: a coerced value, a message too big for QEMU
            self._in_flight.pop(exec_id, None)
            self._quit_sent = False
            self._line_error(flight, f"not sent: {err}")
            return False
        except asyncio.CancelledError:
            flight.abandoned = True
            raise
        except TimeoutError:
            flight.abandoned = True
            oldest = next(iter(self._in_flight.values()), flight)  # pipelined: the first one unanswered
            what = f"no reply to {oldest.request.command} within {self.options.timeout:g} s"
            if self.options.interactive:
                self.renderer.error(f"{what}; a late reply will be shown as late")
            else:
                self.connection_lost(f" ({what})")
            return False
        except (TransportError, OSError, EOFError):
            self._in_flight.pop(exec_id, None)
            if self._quit_sent:
                self.finished = True
                return True
            await self.lose(f"while waiting for the reply to {request.command}")
            return False
        ok = "return" in reply and not flight.not_json
        self._quit_sent = self._quit_sent and "return" in reply
        self.finished = self._quit_sent
        self.subscribers.on_command_done(request.command)
        return ok

    async def _reply(self, waiter: asyncio.Future[Mapping[str, object]]) -> Mapping[str, object]:
        """The reply, once it comes; TimeoutError after --timeout seconds of silence since the request was sent.

        The clock starts at the send (an idle prompt before it does not count), and a server busy
        sending since (an event flood) is alive: only silence after the send counts.
        """
        timeout = self.options.timeout
        sent = time.monotonic()
        try:
            if timeout is None:
                return await waiter
            while True:
                idle = time.monotonic() - max(sent, self.transport.last_activity)
                if idle >= timeout:
                    raise TimeoutError
                done, _ = await asyncio.wait((waiter,), timeout=timeout - idle)
                if done:
                    return waiter.result()
        finally:
            waiter.cancel()  # when the caller stopped waiting (Ctrl-C, timeout)

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run a command for qmpsh itself: not printed, not counted as a line."""
        return await self.transport.query(command, arguments)

    def _line_error(self, flight: _InFlight, what: str) -> None:
        """An error about a request, said with its line in scripts."""
        where = "" if self.options.interactive else f"line {flight.lineno}: "
        self.renderer.error(f"{where}{flight.request.command}: {what}")

    def connection_lost(self, detail: str = "") -> None:
        """Say once that the connection is gone; ``detail`` follows the words "connection to QEMU lost"."""
        if self.lost or self.finished or self._quit_sent:
            self.finished = self.finished or self._quit_sent
            return
        self.lost = True
        retry = self.options.interactive and not self.options.reconnect and not self.qemu_gone
        hint = "; /reconnect to try again" if retry else ""
        self.renderer.error(f"connection to QEMU lost{detail}{hint}")

    # -- wire taps (called in wire order by the connection) ----------------

    def _on_sent(self, msg: Mapping[str, object]) -> None:
        exec_id = msg.get("id")
        flight = self._in_flight.get(exec_id) if isinstance(exec_id, str) else None
        if flight is not None and self.options.verbose:
            self.renderer.document(self._as_user_sees(msg, flight))

    def _on_received(self, msg: Mapping[str, object]) -> None:
        if "event" in msg:
            self._on_event(msg)
            return
        exec_id = reply_id(msg)
        flight = self._in_flight.pop(exec_id, None) if exec_id is not None else None
        if flight is None:  # (replies to qmpsh's own queries never come here)
            what = "an error without an id" if "error" in msg and "id" not in msg else "a reply with an unknown id"
            self.renderer.note(f"the server sent {what}, ignored: {self.renderer.dumps(msg)}")
            return
        if flight.abandoned:
            self.renderer.note(f"late reply to {flight.request.command} (line {flight.lineno}):")
        reply = self._as_user_sees(msg, flight)
        value = reply.get("return")
        if flight.request.form == "hmp" and isinstance(value, str):
            self.renderer.hmp_text(value)
        elif not self.renderer.document(reply):
            flight.not_json = True
            self._line_error(flight, _NOT_JSON)
        if "return" not in reply and not self.options.interactive:
            self.renderer.error(f"line {flight.lineno}: {flight.request.command}: {describe_error(reply)}")

    def _on_event(self, event: Mapping[str, object]) -> None:
        name = str(event["event"])
        self.events.add(event)
        self.ring.add(event)
        self.subscribers.on_event(event)
        if self.options.event_filter.shows(name) and not self.renderer.event(event):
            self.renderer.note(f"event {name}: {_NOT_JSON}")

    @staticmethod
    def _as_user_sees(msg: Mapping[str, object], flight: _InFlight) -> dict[str, object]:
        """The message with qmpsh's own id replaced by the user's (or removed)."""
        out = dict(msg)
        del out["id"]
        if flight.user_id is not None:
            out["id"] = flight.user_id
        return out


def _column_for(request: Request, path: tuple[str, ...]) -> int:
    """Where a schema error points: the longest typed key that leads to ``path``."""
    for end in range(len(path), 0, -1):
        column = request.columns.get(".".join(path[:end]))
        if column is not None:
            return column
    if not path:
        return request.columns.get("", 0)
    return len(request.source)  # a missing argument: the end of the line


def describe_error(reply: Mapping[str, object]) -> str:
    error = reply.get("error")
    if isinstance(error, dict):
        return f"{error.get('class', 'Error')}: {error.get('desc', '')}"
    return f"malformed reply {reply!r}"
