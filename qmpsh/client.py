"""The socket transport: QMP over a unix or TCP socket, with qemu.qmp's async ``QMPClient``.

This is the adapter to qemu.qmp: the only module that imports it, and the only one that uses its
private names (``PRIVATE_NAMES``; ``tests/unit/test_qemu_qmp.py`` checks that each exists in the
installed qemu.qmp, and that it is a version this module was checked against, ``VERIFIED``).
``SocketTransport`` implements ``transport.Transport``: it hands every message to its owner in
wire order, as plain dicts, and raises ``transport``'s errors. It also replaces qemu.qmp's
debug-logging hooks, which stringify every message even when nobody logs, and its reader: once the
session runs, every whole message that arrives is handed on from the connection's protocol
(``data_received``), with no stream buffer and no wake-up of a reader task in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, cast

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError
from qemu.qmp.message import DeserializationError, Message, UnexpectedTypeError
from qemu.qmp.protocol import Runstate
from qemu.qmp.qmp_client import GreetingError, NegotiationError

from qmpsh.transport import (CommandError, ConnectFailure, MessageHook, RequestId, TransportError, Unsendable, WireTap,
                             close_within_grace, reply_id)

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON

#: The qemu.qmp releases this module was checked against, oldest and newest (pyproject.toml says the same).
VERIFIED = ("0.0.4", "0.0.6")
#: Every private qemu.qmp name used here, by the class that has it. 0.0.3 lacks QMPClient's readbuflen.
PRIVATE_NAMES: dict[type, tuple[str, ...]] = {
    QMPClient: ("_cb_outbound", "_cb_inbound", "_bh_recv_message", "_bh_disconnect", "_reader", "_writer",
                "_pending", "_schedule_disconnect"),
    Message: ("_object",),
}

Address = str | tuple[str, int]

# qemu.qmp logs errors (e.g. "Failed to establish connection") that qmpsh
# reports itself in one line; keep them off the user's terminal.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False

_HOST_PORT = r"^\[?([^\[\]]*?)\]?:(\d+)$"  # compiled at first use: a path with a slash never needs it


def parse_address(text: str) -> Address:
    """A unix socket path, or ``HOST:PORT`` (``[::1]:4444`` for IPv6)."""
    match = None if "/" in text else re.match(_HOST_PORT, text)
    if match:
        return (match.group(1) or "localhost", int(match.group(2)))
    return text


def describe_address(address: Address) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


#: The longest message qmpsh reads (QEMU's schema is ~200 KiB; a guest can make replies far larger).
READ_LIMIT = 512 * 1024 * 1024
#: The most the reader takes from the socket's buffer at a time (what asyncio reads from a socket at once).
READ_CHUNK = 256 * 1024
#: How long connecting may take (greeting and negotiation) when no --timeout is given.
CONNECT_TIMEOUT = 30.0


def describe_failure(err: BaseException) -> str:
    """Why a connection failed or ended, in one phrase."""
    cause = err.exc if isinstance(err, (ConnectError, GreetingError, NegotiationError)) else err
    if isinstance(err, ConnectError) and isinstance(cause, (GreetingError, NegotiationError)):
        return describe_failure(cause)
    if isinstance(err, GreetingError):
        return f"the server's greeting is not a QMP greeting ({describe_failure(cause)})"
    if isinstance(err, NegotiationError):
        return f"capabilities negotiation failed ({describe_failure(cause)})"
    if isinstance(cause, DeserializationError):
        raw = bytes(cause.raw)
        if not raw.endswith(b"\n"):
            return "the server closed the connection in the middle of a message"
        return f"the server sent a line that is not JSON: {raw[:60].decode(errors='replace').strip()!r}"
    if isinstance(cause, UnexpectedTypeError):
        return f"the server sent JSON that is not an object: {str(cause.value)[:60]}"
    if isinstance(cause, EOFError):
        return "the server closed the connection"
    if isinstance(cause, BrokenPipeError):
        return "the server closed the connection"
    if isinstance(cause, ConnectionResetError):
        return "the server reset the connection"
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    if isinstance(cause, (KeyError, TypeError, AssertionError)):
        return "unexpected message"
    return str(cause) or type(cause).__name__


OWN_ID_PREFIX = "__qmp#"  # the ids QMPClient gives the requests it sends itself (not in its interface)


#: QEMU's parser refuses a message of more bytes, or more tokens, than this (qobject/json-streamer.c).
QEMU_MAX_BYTES = 64 << 20
QEMU_MAX_TOKENS = 2 << 20
#: Unicode's noncharacters in UTF-8 (U+FDD0-FDEF, and U+xFFFE and U+xFFFF of every plane): QEMU refuses them.
#: Both are needed only for unusual messages: re compiles (and caches) them at their first use.
_NONCHARACTER = rb"\xef\xb7[\x90-\xaf]|\xef\xbf[\xbe\xbf]|[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]"
_TOKEN = rb'"(?:[^"\\]|\\.)*"|[^"{}\[\],:]+|[{}\[\],:]'  # of compact JSON: no spaces


#: What ``encode`` writes with, made once (``json.dumps`` with options makes an encoder per call).
_STRICT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(msg: Mapping[str, object]) -> bytes:
    """``msg`` as one line of strict JSON, the only kind QEMU reads.

    Python's json would write NaN and Infinity, and lone surrogates as ``\\ud800`` escapes: QEMU
    refuses them, and a message past its size limits, with errors that have no id, and reads the
    rest of the message on its own. The checks cost nothing on ordinary messages.

    :raise Unsendable: NaN or Infinity, a lone surrogate, an integer too long to write, nesting too
        deep, a message too big for QEMU.
    """
    try:
        data = _STRICT_JSON.encode(msg).encode()
    except UnicodeEncodeError:
        raise Unsendable("a lone surrogate in a string: not valid Unicode") from None
    except ValueError as err:  # NaN or Infinity; an integer of more digits than Python writes
        raise Unsendable(f"not JSON: {err}") from None
    except RecursionError:
        raise Unsendable("nested too deeply") from None
    if not data.isascii() and re.search(_NONCHARACTER, data):
        raise Unsendable("a noncharacter (U+FFFF, U+FDD0...) in a string, which QEMU refuses")
    if len(data) > QEMU_MAX_TOKENS:  # no token is shorter than a byte: only a message this long can have too many
        if len(data) > QEMU_MAX_BYTES:
            raise Unsendable(f"more than {QEMU_MAX_BYTES >> 20} MiB, which QEMU refuses")
        if len(re.findall(_TOKEN, data)) > QEMU_MAX_TOKENS:
            raise Unsendable(f"more than {QEMU_MAX_TOKENS} JSON tokens, which QEMU refuses")
    return data + b"\n"


_JSON_DECODER = json.JSONDecoder()


def _loads(text: str) -> object:
    """``json.loads(text)``, quicker for a line that is the JSON alone, as servers write it.

    ``raw_decode`` reads the JSON at the start of the text and says where it ended, without the two
    whitespace scans of ``json.loads`` (half its time for an event); any other line gets
    ``json.loads``' own answer, so what is accepted and every error are the same.
    """
    try:
        obj, end = _JSON_DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)
    return obj if end == len(text) else json.loads(text)


def decode(line: bytes, whole: bool = True) -> dict[str, object]:
    """One message read (a line, without its newline), as qemu.qmp's ``Message`` reads it, with its errors.

    ``whole``: the line ended with a newline (not the last bytes before the server hung up).
    :raise DeserializationError: not JSON (its ``raw`` ends with a newline when the line had one).
    :raise UnexpectedTypeError: JSON that is not an object.
    """
    text = line.decode("utf-8", "surrogatepass")  # QMP is UTF-8: json need not guess the encoding
    try:
        obj = _loads(text)
    except json.JSONDecodeError as err:
        raise DeserializationError("Failed to deserialize QMP message.", line + b"\n" if whole else line) from err
    if not isinstance(obj, dict):
        raise UnexpectedTypeError("QMP message is not a JSON object.", obj)
    return obj


def _ignore(msg: Mapping[str, object]) -> None:
    pass


class _Direct(asyncio.Protocol):
    """The connection's protocol once the session runs: what arrives is handed on at once (``take``).

    The rest goes to the ``StreamReaderProtocol`` it took the place of, which the stream reader and
    writer still use: the end of the connection (EOF, an error) reaches the reader task, which waits
    for nothing else now; the writer's drain and close work as before.
    """

    def __init__(self, take: Callable[[bytes], None], fault: Callable[[Exception], None],
                 stream: asyncio.Protocol) -> None:
        self._take, self._fault, self._stream = take, fault, stream
        self.on = True  # until a fault, or the end of the reader task

    def data_received(self, data: bytes) -> None:
        if not self.on:
            return  # after a fault, or once the reader task is over: dropped, as nothing more was read
        try:
            self._take(data)
        except Exception as err:  # noqa: BLE001 - ends the connection, as it would in the reader task
            self.on = False
            self._fault(err)

    def eof_received(self) -> bool | None:
        return self._stream.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream.connection_lost(exc)

    def pause_writing(self) -> None:
        self._stream.pause_writing()

    def resume_writing(self) -> None:
        self._stream.resume_writing()


class SocketTransport(QMPClient):
    """A QMPClient whose traffic is tapped in wire order: a ``transport.Transport``.

    Events never reach qemu.qmp's own listeners (the reader hands them to ``on_received`` instead),
    so its default listener does not keep every event forever.
    """

    def __init__(self, address: Address, *, tap: WireTap | None = None, negotiate: bool = True) -> None:
        """``negotiate=False``: expect no greeting and negotiate nothing (qemu-ga)."""
        super().__init__("qmpsh", readbuflen=READ_LIMIT)
        self.address = address
        self.where = self.label = describe_address(address)
        self.domain: str | None = None  # a socket: no libvirt domain
        self.await_greeting = self.negotiate = negotiate
        self.connections = 0
        self.last_received: Message | None = None  # to explain a failed negotiation
        self.last_activity = time.monotonic()  # when the server last sent anything: it is alive
        self._waiting: dict[RequestId, asyncio.Future[Mapping[str, object]]] = {}  # user requests sent by submit()
        self._unanswered: dict[RequestId, None] = {}  # ids of every request sent and not answered yet, oldest first
        self._orphans = False  # an id-less error answered the oldest request: more may follow, no one's
        self._partial = bytearray()  # the start of a message whose end has not been read yet
        self._direct: _Direct | None = None  # the connection's protocol once the reader task has started
        self._on_sent: MessageHook = _ignore
        self._on_received: MessageHook = _ignore
        self._tap = tap

    def attach(self, on_sent: MessageHook, on_received: MessageHook) -> None:
        self._on_sent, self._on_received = on_sent, on_received

    def _cb_outbound(self, msg: Message) -> Message:  # what QMPClient sends: negotiation, qmpsh's own queries
        if self._tap:
            self._tap.sent(bytes(msg))
        exec_id = reply_id(msg)
        if exec_id is not None:
            self._unanswered[exec_id] = None
        return msg

    def _cb_inbound(self, msg: Message) -> Message:  # the greeting and negotiation (then the reader below reads)
        if self._tap:
            self._tap.received(bytes(msg))  # the bytes as read: Message keeps them
        self.last_received = msg
        self.last_activity = time.monotonic()
        obj = msg._object  # the dict Message wraps
        if "event" not in obj:
            self._answer(obj)
        return msg

    def _answer(self, obj: dict[str, object]) -> None:
        """Take the request reply ``obj`` answers off the unanswered; an error without an id answers the oldest.

        QEMU answers in order, and has no id to give when it could not read a request. It then reads
        the rest of that request on its own, with an id-less error for each piece: those answer no
        one, up to the next reply with an id.
        """
        if "id" in obj:
            exec_id = reply_id(obj)
            if exec_id is not None:
                self._unanswered.pop(exec_id, None)
            self._orphans = False
        elif "error" in obj and self._unanswered and not self._orphans:
            oldest = next(iter(self._unanswered))
            del self._unanswered[oldest]
            obj["id"] = oldest  # from here on it is that request's reply, to qemu.qmp too
            self._orphans = True

    async def _bh_recv_message(self) -> None:
        """The reader task's step: what the stream has read, then only the end of the connection.

        The first step of a connection gives it a protocol that hands on what arrives (``_Direct``,
        ``_take``), then hands on what was read before (during negotiation): ``read`` returns what
        the stream holds without yielding, so nothing can arrive in between, and the steps that
        follow take the rest, until the stream is empty. Then ``read`` returns only at the end of
        the connection: at EOF (the last bytes the server sent before it hung up are read as a
        message, as qemu.qmp reads them), or raising the connection's error, or a fault found in
        ``_take``. Once the step raises, the reader task is over: nothing more is handed on.
        """
        assert self._reader is not None and self._writer is not None
        try:
            if self._direct is None:
                transport = self._writer.transport
                self._direct = _Direct(self._take, self._fault, cast("asyncio.Protocol", transport.get_protocol()))
                transport.set_protocol(self._direct)
            chunk = await self._reader.read(READ_CHUNK)
            if chunk:
                self._take(chunk)
                return
            rest, self._partial = bytes(self._partial), bytearray()
            if rest:
                self._hand_on(rest, whole=False)
            raise EOFError
        except BaseException:
            if self._direct is not None:
                self._direct.on = False
            raise

    def _take(self, chunk: bytes) -> None:
        """Hand on every whole message in ``chunk`` (the bytes that arrived), in wire order; keep the rest.

        A fault ends the connection, after the messages before it: a line that is not a JSON object,
        a message over READ_LIMIT, anything the owner's hook raises.
        """
        self.last_activity = time.monotonic()
        end = chunk.rfind(b"\n")
        if end < 0:
            self._partial += chunk
            if len(self._partial) > READ_LIMIT:
                raise ValueError(f"the server sent a message of more than {READ_LIMIT >> 20} MiB")
            return
        lines = chunk[:end].split(b"\n")
        if self._partial:
            lines[0] = bytes(self._partial + lines[0])
            if len(lines[0]) > READ_LIMIT:  # only the first line can be longer than a chunk
                raise ValueError(f"the server sent a message of more than {READ_LIMIT >> 20} MiB")
        self._partial = bytearray(chunk[end + 1:])
        for line in lines:
            self._hand_on(line)

    def _fault(self, err: Exception) -> None:
        """``_take``, called by the protocol, found a fault: the reader task raises it, and the connection
        ends with it, as if the task had found it (the runstate leaves RUNNING at once, as it did)."""
        if self._reader is not None:
            self._reader.set_exception(err)  # wakes the reader task before the disconnect task's first step
        self._schedule_disconnect()

    def _to_qmpclient(self, reply: dict[str, object]) -> None:
        """A reply to QMPClient's own request, to its caller: what ``QMPClient._on_message`` does with it,
        without waiting. One given up on (no longer pending), or a second reply to it, is dropped."""
        queue = self._pending.get(cast("str", reply["id"]))
        if queue is not None and not queue.full():
            queue.put_nowait(Message(reply, eager=False))

    def _hand_on(self, line: bytes, whole: bool = True) -> None:
        """One message read, to the owner (``on_received``) and its request's future.

        A reply to QMPClient's own request goes to QMPClient instead (``_to_qmpclient``).
        """
        obj = decode(line, whole)
        if self._tap:
            self._tap.received(line)
        if "event" in obj:
            self._on_received(obj)
            return
        self._answer(obj)
        exec_id = reply_id(obj)
        if isinstance(exec_id, str) and exec_id.startswith(OWN_ID_PREFIX):
            self._to_qmpclient(obj)
            return
        self._on_received(obj)
        waiter = self._waiting.pop(exec_id, None) if exec_id is not None else None
        if waiter is not None and not waiter.done():
            waiter.set_result(obj)
        # A reply nobody waits for any more (e.g. after Ctrl-C) was already
        # shown by on_received; qemu.qmp would drop it or treat an id-less
        # error as fatal.

    def submit(self, msg: Mapping[str, object], exec_id: RequestId) -> asyncio.Future[Mapping[str, object]]:
        """Send a user's request under ``exec_id``; the future gets the reply.

        This is the per-command hot path of scripts that pipe thousands of
        lines, so it writes straight to the stream and hands back a future,
        instead of qemu.qmp's execute path (a copy of the message, a queue, a
        writer task and a queue per reply). Connecting, negotiating, reading
        and qmpsh's own queries still go through QMPClient. The future fails
        with TransportError if the connection goes away first.

        :raise TransportError: not connected.
        :raise Unsendable: the message is not strict JSON (nothing is sent).
        """
        if self.runstate != Runstate.RUNNING or self._writer is None:
            raise TransportError("not connected")
        request = {**msg, "id": exec_id}
        data = encode(request)
        if self._tap:
            self._tap.sent(data)
        self._on_sent(request)
        waiter: asyncio.Future[Mapping[str, object]] = asyncio.get_running_loop().create_future()
        self._waiting[exec_id] = waiter  # until its reply comes, or the connection goes
        self._unanswered[exec_id] = None
        self._writer.write(data)
        return waiter

    async def _bh_disconnect(self) -> None:
        try:
            await super()._bh_disconnect()
        finally:
            self._unanswered.clear()
            self._orphans = False
            self._partial = bytearray()
            self._direct = None  # the next connection gets its own
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(TransportError("disconnected"))
            self._waiting.clear()

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run a command for qmpsh itself (see ``transport.Transport.query``)."""
        try:
            return cast("JSON", await self.execute(command, arguments))
        except ExecuteError as err:
            raise CommandError(err.error_class, str(err)) from err
        except QMPError as err:
            raise TransportError((str(err) or type(err).__name__).splitlines()[0]) from err  # one line: the first

    @property
    def running(self) -> bool:
        return self.runstate == Runstate.RUNNING

    @property
    def version(self) -> Mapping[str, object] | None:
        greeting = self.greeting
        return greeting.QMP.version if greeting is not None else None

    async def open(self, timeout: float | None = None, wait: float = 0.0) -> None:
        """Connect, negotiate; retry for ``wait`` seconds while the socket is not there yet.

        Raises ConnectFailure with a one-line reason.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                await asyncio.wait_for(self.connect(self.address), timeout or CONNECT_TIMEOUT)
                self.connections += 1
                return
            except TimeoutError:
                greeted = self.greeting is not None
                await self.close()
                what = ("no answer to capabilities negotiation" if greeted else
                        "no greeting" if self.await_greeting else "no connection")
                raise ConnectFailure(f"{what} from the server within {timeout or CONNECT_TIMEOUT:g} s") from None
            except ConnectError as err:
                retry = isinstance(err.exc, (FileNotFoundError, ConnectionRefusedError))
                if retry and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    continue
                reason = describe_failure(err)
                if isinstance(err.exc, NegotiationError) and self.last_received and "error" in self.last_received:
                    error = self.last_received["error"]
                    desc = error.get("desc", error) if isinstance(error, dict) else error
                    reason = f"capabilities negotiation failed: {desc}"
                raise ConnectFailure(reason) from None

    async def close(self) -> str | None:
        """Disconnect; the reason the connection had ended, if it ended by a fault.

        A cancelled caller still gets the disconnect, within a grace (``transport.close_within_grace``).
        """
        return await close_within_grace(self._close())

    async def _close(self) -> str | None:
        try:
            await self.disconnect()
        except Exception as err:  # noqa: BLE001 - whatever ended the session is the reason
            return describe_failure(err)
        return None
