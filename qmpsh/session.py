"""A ``Session`` runs input against one QMP connection.

The prompt hands it what the user typed (``await session.run(text)``), a script its lines one at a
time (``await session.run_line(line, lineno)``, then ``await session.end_input()``); from there a
line takes one path: parsed, built-ins run, requests checked and handed to ``inflight.Requests``,
events kept. The connection's life is one ``Runstate``, changed by the happenings in ``AFTER``
(and put back by ``lose()`` when it is stopped before it could find out why).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, NamedTuple, TypeVar, cast

from qmpsh.events import EventFilter, EventLog, EventRing, Subscribers
from qmpsh.inflight import Flight, Requests
from qmpsh.render import NOT_JSON_NOTE as _NOT_JSON
from qmpsh.render import Renderer
from qmpsh.syntax import Builtin, Item, ParseError, Reader, Request, Skipped
from qmpsh.transport import CommandError, Transport, TransportError, Unsendable, WireTap

if TYPE_CHECKING:  # imported where used: a script without key=value arguments never needs them
    from qmpsh.jsontypes import JSON, SchemaInfo
    from qmpsh.launch import LaunchedQemu
    from qmpsh.live import LiveState
    from qmpsh.record import Recorder
    from qmpsh.schema import Schema

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



class Options(NamedTuple):
    """What the command line asks of a session. /events gives it new ones, with its inline filter replaced."""

    verbose: bool = False
    hmp: bool = False
    exit_on_error: bool = False
    interactive: bool = False
    use_schema: bool = True  # check and coerce key=value arguments against the live schema
    event_filter: EventFilter = EventFilter()  # which events print inline
    timeout: float | None = None  # seconds to wait for a reply (and for the greeting)
    reconnect: bool = False  # interactive: reconnect by itself, with backoff, when the connection is lost
    pipeline: bool = False  # scripts: send requests without waiting for earlier replies
    echo: bool = False  # -x: each script line on stderr before what it prints
    libvirt: bool = False  # --domain: the session uses libvirt (Tab lists its domains)
    libvirt_uri: str | None = None  # -c: libvirt's URI for --domain, /domains and /connect NAME


class _Plain(enum.Enum):
    """An enum hashed by identity: Enum's own hash is Python code, and every request looks states up."""

    __hash__ = object.__hash__


class Runstate(_Plain):
    """Where a session is in its connection's life."""

    CONNECTED = "connected"  # requests go out
    QUITTING = "quitting"  # quit was sent: QEMU closing the connection now is the end it asked for
    LOSING = "losing"  # the connection broke: finding out why, to say it once
    LOST = "lost"  # the connection went away; at a terminal /reconnect or /connect can bring it back
    QUIT = "quit"  # QEMU accepted quit, or closed the connection after it: the session is over
    LEFT = "left"  # /quit or Ctrl-D: the session is over (at a terminal, unless the user stays)
    LEFT_LOST = "left-lost"  # the user left after the connection was lost: over, and lost


class Happening(_Plain):
    """What changes a session's ``Runstate``."""

    CONNECTED = "connected"  # connect, /reconnect or /connect opened a connection
    SENT = "sent"  # a request other than quit went out
    QUIT_SENT = "quit-sent"  # the command quit went out
    ANSWERED = "answered"  # a request's reply is a success
    REFUSED = "refused"  # a request's reply is an error, or it could not be sent
    BREAKING = "breaking"  # the connection stopped working (lose() starts finding out why)
    BROKEN = "broken"  # the connection is gone
    LEAVE = "leave"  # /quit, Ctrl-D
    STAY = "stay"  # at a terminal, the user answered no to leaving


_S, _H = Runstate, Happening
#: The state after a happening; a pair not listed leaves the state as it is.
AFTER: dict[tuple[Runstate, Happening], Runstate] = {
    (_S.LOST, _H.CONNECTED): _S.CONNECTED, (_S.LOSING, _H.CONNECTED): _S.CONNECTED,
    (_S.QUITTING, _H.CONNECTED): _S.CONNECTED, (_S.LEFT_LOST, _H.CONNECTED): _S.LEFT,
    (_S.CONNECTED, _H.QUIT_SENT): _S.QUITTING, (_S.QUITTING, _H.SENT): _S.CONNECTED,
    (_S.QUITTING, _H.ANSWERED): _S.QUIT, (_S.QUITTING, _H.REFUSED): _S.CONNECTED,
    (_S.CONNECTED, _H.BREAKING): _S.LOSING, (_S.QUITTING, _H.BREAKING): _S.QUIT,
    (_S.CONNECTED, _H.BROKEN): _S.LOST, (_S.LOSING, _H.BROKEN): _S.LOST, (_S.QUITTING, _H.BROKEN): _S.QUIT,
    (_S.CONNECTED, _H.LEAVE): _S.LEFT, (_S.LOSING, _H.LEAVE): _S.LEFT, (_S.QUITTING, _H.LEAVE): _S.QUIT,
    (_S.LOST, _H.LEAVE): _S.LEFT_LOST,
    (_S.LEFT, _H.STAY): _S.CONNECTED, (_S.QUIT, _H.STAY): _S.QUITTING, (_S.LEFT_LOST, _H.STAY): _S.LOST,
}
_OVER = frozenset({Runstate.QUIT, Runstate.LEFT, Runstate.LEFT_LOST})  # finished
_GONE = frozenset({Runstate.LOST, Runstate.LEFT_LOST})  # lost


class Session:
    def __init__(self, renderer: Renderer, options: Options, transport: Transport,
                 launched: LaunchedQemu | None = None, tap: WireTap | None = None,
                 recorder: Recorder | None = None) -> None:
        from qmpsh.commands import BUILTINS  # commands import Session for typing

        self.renderer = renderer
        self.options = options
        self.launched = launched  # the QEMU qmpsh started (--launch): it stops when the session ends
        self.transport = transport  # the connection to QEMU: messages come back through requests.on_sent, _on_received
        self.tap = tap  # --logfile: for the transports /connect makes
        self.requests = Requests(renderer, options)
        transport.attach(self.requests.on_sent, self._on_received)
        self.reader = Reader(BUILTINS, hmp=options.hmp)
        self.events = EventLog()
        self.ring = EventRing()
        self.subscribers = Subscribers()  # the catalog, a progress bar ...: told of events and answered commands
        self._live: LiveState | None = None
        self.recorder = recorder  # what /save writes (at a terminal, and with --record): the lines a rerun needs
        if recorder is not None:
            self.subscribers.add(recorder)
        self.requests.on_late = self.subscribers.on_answered  # the line gave up, QEMU ran the command
        self._failed = False  # some line failed: exit status 1 in scripts
        self._state = Runstate.CONNECTED  # as it will be once connect() returns (nothing is run before)
        self.commands: list[str] = []  # from query-commands, for completion
        self.schema: Schema | None = None  # None until loaded, or when the server has none
        self._schema_task: asyncio.Task[Schema | None] | None = None
        self.switched = asyncio.Event()  # set when switch() puts another transport in place

    @property
    def live(self) -> LiveState:
        """The run state and the jobs, kept current (``live``): made when first asked for (the toolbar,
        /job, leaving), so a script that never follows a job never loads it."""
        if self._live is None:
            from qmpsh.live import LiveState

            self._live = LiveState(self.query, lambda: self.transport.running and not self.lost)
            self.subscribers.add(self._live)
        return self._live

    # -- the connection ----------------------------------------------------------

    async def connect(self, wait: float = 0.0) -> None:
        """Connect the transport; raises transport.ConnectFailure."""
        await self.transport.open(self.options.timeout, wait)
        self._happen(Happening.CONNECTED)

    async def reconnect(self) -> None:
        """Connect again to the same place and rebuild what was learnt from the old QEMU."""
        await self.transport.close()
        await self.connect()
        await self._forget()

    async def switch(self, transport: Transport) -> None:
        """Use ``transport`` in place of the current one, once it is open; the old one is closed then.

        :raise ConnectFailure: ``transport`` did not open; the current one is still in use, as it was.
        """
        transport.attach(self.requests.on_sent, self._on_received)
        try:
            await transport.open(self.options.timeout)
        except asyncio.CancelledError:  # Ctrl-C while connecting: nothing half open is left behind
            await transport.close()
            raise
        old, self.transport = self.transport, transport
        self._happen(Happening.CONNECTED)
        self.switched.set()
        self.switched = asyncio.Event()
        await old.close()
        self.events = EventLog()  # a /wait must not take the old QEMU's events
        await self._forget()

    async def _forget(self) -> None:
        """Rebuild what was learnt from the QEMU before: schema, run state, commands, live values."""
        self.schema, self._schema_task = None, None
        self.subscribers.on_connection_changed()
        if self.options.interactive:  # completion and help use them; a script loads the schema when it needs it
            self.start_loading_schema()
            await self.load_commands()

    async def load_commands(self) -> None:
        try:
            reply = await self.query("query-commands")
        except TransportError:
            return
        if isinstance(reply, list):
            self.commands = sorted(str(c["name"]) for c in reply if isinstance(c, dict) and "name" in c)

    async def lose(self, what: str) -> None:
        """The connection broke: say why, once (pipelined requests all notice at the same moment).

        Nothing is said after quit (the end it asked for), nor once the session is over or the loss said.
        """
        before = self._state
        self._happen(Happening.BREAKING)
        if before is not Runstate.CONNECTED:
            return
        try:
            reason = await self.transport.close() or "the server closed the connection"
            ended = await self.launched.ended(within=1.0) if self.launched is not None else None
        except BaseException:  # stopped (qmpsh is ending): nothing found out, nothing said
            if self._state is Runstate.LOSING:
                self._state = Runstate.CONNECTED
            raise
        reason = f"the QEMU qmpsh launched {ended}" if ended else reason
        self.connection_lost(f" {what}: {reason}" if what else f": {reason}")

    # -- the state -------------------------------------------------------------

    def _happen(self, happening: Happening) -> None:
        self._state = AFTER.get((self._state, happening), self._state)

    @property
    def state(self) -> Runstate:
        return self._state

    @property
    def lost(self) -> bool:
        """The connection went away (and no other took its place)."""
        return self._state in _GONE

    @property
    def finished(self) -> bool:
        """quit, /quit or Ctrl-D: the session is over."""
        return self._state in _OVER

    @property
    def failed(self) -> bool:
        """Some line failed: exit status 1 in scripts."""
        return self._failed

    def leave(self) -> None:
        """/quit or Ctrl-D: the session is over."""
        self._happen(Happening.LEAVE)

    def stay(self) -> None:
        """Asked whether to leave, the user answered no: the session goes on as it was."""
        self._happen(Happening.STAY)

    @property
    def qemu_gone(self) -> bool:
        """The QEMU qmpsh launched has exited: there is nothing to reconnect to."""
        return self.launched is not None and self.launched.exited()

    @property
    def quit_sent(self) -> bool:
        """The QMP command quit was sent (and not refused): QEMU is stopping."""
        return self._state in (Runstate.QUITTING, Runstate.QUIT)

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
        args = request.message.get("arguments", {})  # a key=value line without arguments has none
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
        if not coerced and "arguments" not in request.message:
            return request
        return request._replace(message={**request.message, "arguments": coerced})

    # -- running input -------------------------------------------------------

    @property
    def stopped(self) -> bool:
        state = self._state  # (read here, not through lost and finished: checked before every item)
        lost = state in _GONE and not self.options.interactive  # at a terminal /reconnect can bring it back
        return (state in _OVER or lost or (self._failed and self.options.exit_on_error)
                or self.renderer.stdout_error is not None)  # nobody reads what a script would print

    async def run(self, text: str) -> bool:
        """Run a complete chunk of input (a line or a paste, at the prompt); False if any item failed."""
        return await self.run_items(self.reader.feed(text).items)

    async def run_line(self, line: str, lineno: int) -> bool:
        """Line ``lineno`` of a script: run what it completes. True while more lines are needed
        (brackets or a transaction are still open)."""
        if self.options.echo:
            self.renderer.echo(line)
        parsed = self.reader.add_line(line, lineno)
        if parsed.incomplete:
            return True
        await self.run_items(parsed.items)
        return False

    def drop_line(self, lineno: int, why: str) -> None:
        """Line ``lineno`` of a script could not be read whole (``why``): neither it nor the input it
        continues is run, and the script fails."""
        first = self.reader.drop_pending()
        dropped = f", nor the input it continues (from line {first})" if first is not None else ""
        self.fail_parse(ParseError(f"{why}: not run{dropped}", "", 0, lineno))
        self._failed = True

    async def end_input(self) -> None:
        """A script's input ended: wait for the replies still due, and fail input left unfinished."""
        await self.drain()
        error = self.reader.end_of_input()
        self.reader.drop_pending()  # the next input (another script file) starts afresh
        if error is not None and not self.stopped:
            self.fail_parse(error)
            self._failed = True

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
                    ok, self._failed = False, True
                    continue
                due = self.requests.pipeline(outcome)
                if due:
                    await asyncio.wait((due[-1],))  # the last due is answered after the others
                for answered in due:
                    ok = await self._settle(answered) and ok
                continue
            ok = await self.drain() and ok
            if self.stopped:
                break
            ok = await self._settle(self.run_item(item, first_lineno)) and ok
        return ok

    async def drain(self) -> bool:
        """Wait for every pipelined request's reply."""
        ok = True
        while (outcome := self.requests.next_pipelined()) is not None:
            ok = await self._settle(outcome) and ok
        return ok

    async def _settle(self, outcome: Awaitable[bool]) -> bool:
        if await outcome:
            return True
        self._failed = True
        return False

    async def run_item(self, item: Item, first_lineno: int = 1) -> bool:
        lineno = first_lineno + item.lineno - 1
        if isinstance(item, ParseError):
            self.fail_parse(item, first_lineno)
            return False
        if isinstance(item, Skipped):
            self.renderer.skipped(item.reason, None if self.options.interactive else lineno)
            return True
        if isinstance(item, Builtin):
            ok = await self._run_builtin(item)
            self.subscribers.on_builtin_done(item, ok)
            return ok
        return await self.execute(item, lineno)

    async def _run_builtin(self, builtin: Builtin) -> bool:
        from qmpsh.commands import BUILTINS

        lost_before = self.lost
        try:
            return await BUILTINS[builtin.name](self, builtin)
        except CommandError as err:
            self.renderer.error(f"/{builtin.name}: {err.error_class}: {err.desc}")
            return False
        except (TransportError, OSError, EOFError) as err:
            if lost_before:  # said when it happened; this line could not work without it
                self.renderer.error(f"/{builtin.name}: not connected to QEMU: /reconnect first")
            elif self.transport.running:  # an answer it could not use (a server's odd reply): the line fails
                self.renderer.error(f"/{builtin.name}: {err}")
            else:
                await self.lose(f"during /{builtin.name}")
            return False

    def fail(self, message: str) -> None:
        """A failure found outside the session's own lines (a replayed reply that differs): said, and the
        run fails (exit status 1 in scripts)."""
        self.renderer.error(message)
        self._failed = True

    def fail_parse(self, error: ParseError, first_lineno: int = 1) -> None:
        error.lineno += first_lineno - 1
        self.renderer.input_error(error, script=not self.options.interactive)

    async def execute(self, request: Request, lineno: int = 1) -> bool:
        """Check and send one request and wait for its reply (printed by requests.on_reply as it arrives)."""
        flight = await self._send(request, lineno)
        if flight is None:
            return False
        try:
            reply = await self.requests.reply(self.transport, flight)
        except (Unsendable, TransportError, OSError, EOFError) as err:  # TimeoutError is an OSError
            return await self._unanswered(flight, err)
        return self._answered(flight, reply)

    async def submit(self, request: Request, lineno: int = 1) -> asyncio.Future[bool] | None:
        """Check and send one request without waiting for its reply (None: rejected, nothing sent).

        The future is settled when the reply comes, by a callback: a task only for what has no reply.
        """
        flight = await self._send(request, lineno)
        if flight is None:
            return None
        try:
            waiter = self.requests.send(self.transport, flight)
        except (Unsendable, TransportError, OSError, EOFError) as err:
            return asyncio.ensure_future(self._unanswered(flight, err))
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(lambda _: self._settle_submitted(flight, waiter, outcome))
        return outcome

    def _settle_submitted(self, flight: Flight, waiter: asyncio.Future[Mapping[str, object]],
                          outcome: asyncio.Future[bool]) -> None:
        try:
            reply = self.requests.received(flight, waiter)
        except (TransportError, OSError, EOFError) as err:  # TimeoutError is an OSError
            unanswered = asyncio.ensure_future(self._unanswered(flight, err))
            unanswered.add_done_callback(lambda _: _copy_outcome(unanswered, outcome))
            return
        outcome.set_result(self._answered(flight, reply))

    async def _send(self, request: Request, lineno: int) -> Flight | None:
        if self._state in _GONE:
            self.renderer.error("not connected to QEMU" + (": /reconnect first" if self.options.interactive else ""))
            return None
        checked = await self.check(request, lineno)
        if checked is None:
            return None
        flight = self.requests.open(checked, lineno)
        self.events.command_sent()
        self.renderer.since = time.time()
        self._happen(Happening.QUIT_SENT if checked.command == "quit" else Happening.SENT)
        return flight

    def _answered(self, flight: Flight, reply: Mapping[str, object]) -> bool:
        """A request's reply came (and is printed): whether the line succeeded."""
        self._happen(Happening.ANSWERED if "return" in reply else Happening.REFUSED)
        self.subscribers.on_answered(flight.request, reply)
        return "return" in reply and not flight.not_json

    async def _unanswered(self, flight: Flight, err: Exception) -> bool:
        """A request got no reply: ``err`` says why (see ``inflight.Requests``); whether that is a success."""
        request = flight.request
        if isinstance(err, Unsendable):  # what the parser cannot see: a coerced value, a message too big for QEMU
            self._happen(Happening.REFUSED)
            self.renderer.line_error(request.command, f"not sent: {err}", self.requests.where(flight))
            return False
        if isinstance(err, TimeoutError):
            what = self.requests.silence(flight)
            if self.options.interactive:
                self.renderer.error(f"{what}; a late reply will be shown as late")
            else:
                self.connection_lost(f" ({what})")
            return False
        if self.quit_sent:
            self._happen(Happening.BROKEN)  # the end quit asked for
            return True
        await self.lose(f"while waiting for the reply to {request.command}")
        return False

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run a command for qmpsh itself: not printed, not counted as a line."""
        return await self.transport.query(command, arguments)

    def connection_lost(self, detail: str = "") -> None:
        """Say once that the connection is gone; ``detail`` follows the words "connection to QEMU lost"."""
        before = self._state
        self._happen(Happening.BROKEN)
        if self._state is not Runstate.LOST or before is Runstate.LOST:
            return  # said already; or the end quit asked for; or the session is over
        retry = self.options.interactive and not self.options.reconnect and not self.qemu_gone
        hint = "; /reconnect to try again" if retry else ""
        self.renderer.error(f"connection to QEMU lost{detail}{hint}")

    # -- wire taps (called in wire order by the connection) ----------------

    def _on_received(self, msg: Mapping[str, object]) -> None:
        if "event" in msg:
            self._on_event(msg)
            return
        self.requests.on_reply(msg)

    def _on_event(self, event: Mapping[str, object]) -> None:
        name = str(event["event"])
        self.events.add(event)
        self.ring.add(event)
        self.subscribers.on_event(event)
        if self.options.event_filter.shows(name) and not self.renderer.event(event):
            self.renderer.note(f"event {name}: {_NOT_JSON}")


def _column_for(request: Request, path: tuple[str, ...]) -> int:
    """Where a schema error points: the longest typed key that leads to ``path``."""
    for end in range(len(path), 0, -1):
        column = request.columns.get(".".join(path[:end]))
        if column is not None:
            return column
    if not path:
        return request.columns.get("", 0)
    return len(request.source)  # a missing argument: the end of the line


def _copy_outcome(source: asyncio.Future[bool], to: asyncio.Future[bool]) -> None:
    """Settle ``to`` as ``source`` was settled."""
    if source.cancelled():
        to.cancel()
    elif (error := source.exception()) is not None:
        to.set_exception(error)
    else:
        to.set_result(source.result())
