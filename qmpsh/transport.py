"""What a session needs from a connection to a QMP server, whatever carries it.

``client.SocketTransport`` carries QMP over a unix or TCP socket with qemu.qmp; a libvirt
domain's monitor is to be the second. The session, the built-ins, the toolbar and the live values
use this interface and these errors only, so that either transport can serve them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON

#: Sees one message, as a JSON object: a request as it is sent, a reply or an event as it is read.
MessageHook = Callable[[Mapping[str, object]], None]


class TransportError(Exception):
    """A request got no answer: not connected, the connection went before the reply, a malformed reply.

    CommandError is one too, so ``except TransportError`` covers every way a query can fail.
    """


class CommandError(TransportError):
    """The server answered with an error: ``{"error": {"class": ..., "desc": ...}}``."""

    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(error_class, desc)
        self.error_class = error_class
        self.desc = desc

    def __str__(self) -> str:
        return self.desc


class ConnectFailure(Exception):
    """Connecting failed; the message says why in words a user can act on."""


class Unsendable(ValueError):
    """A message that QEMU's strict JSON parser would refuse, so it is not sent."""


class WireTap(Protocol):
    """Sees every message both ways as the bytes of the wire, greeting and negotiation included (--logfile)."""

    def sent(self, data: bytes) -> None: ...

    def received(self, data: bytes) -> None: ...


def qemu_version(transport: Transport) -> str:
    """QEMU's version from the greeting (``7.2.22``); "" when the server did not say."""
    version = transport.version
    qemu = version.get("qemu", {}) if version is not None else {}
    if not isinstance(qemu, dict) or not qemu:
        return ""
    return f"{qemu.get('major')}.{qemu.get('minor')}.{qemu.get('micro')}"


#: A request's id: qmpsh's own are numbers (``1``, ``2``...), qemu.qmp's strings (``__qmp#00001``).
RequestId = str | int


def reply_id(msg: Mapping[str, object]) -> RequestId | None:
    """A reply's id when it can be one of ours (a string or a number); a server may send anything there."""
    exec_id = msg.get("id")
    return exec_id if isinstance(exec_id, (str, int)) and not isinstance(exec_id, bool) else None


@runtime_checkable
class Transport(Protocol):
    """One connection to a QMP server, opened again after it is lost.

    Messages reach the owner in wire order through the hooks given to ``attach``: ``on_sent`` as
    each user request is written, ``on_received`` as each reply or event is read, before the
    request's future is done, so replies and events print in the order the server sent them.
    Replies to qmpsh's own queries (``query``) go to their caller only.
    """

    #: What it connects to, for messages: a socket path, ``HOST:PORT``.
    where: str
    #: ``time.monotonic()`` when the server last sent anything: it is alive.
    last_activity: float
    #: How many times it has connected: a new number is a new connection, perhaps to another QEMU.
    connections: int

    @property
    def label(self) -> str:
        """What it is connected to, in a few words for the toolbar: a socket's address, ``domain NAME``."""

    @property
    def domain(self) -> str | None:
        """The libvirt domain's name, when it is a domain's monitor (``--domain``, ``/connect NAME``); else None."""

    def attach(self, on_sent: MessageHook, on_received: MessageHook) -> None:
        """Hand every user request sent, and every reply and event received, to these hooks."""

    async def open(self, timeout: float | None = None, wait: float = 0.0) -> None:
        """Connect, and negotiate; retry for ``wait`` seconds while the server is not there yet.

        :raise ConnectFailure: with a one-line reason.
        """

    @property
    def running(self) -> bool:
        """Connected and negotiated: requests can be sent."""

    async def runstate_changed(self) -> object:
        """Wait until the connection's state changes (connecting, up, closing, closed)."""

    @property
    def version(self) -> Mapping[str, object] | None:
        """The server's version as its greeting gives it (``{"qemu": {"major": 7, ...}, "package": ...}``)."""

    def submit(self, msg: Mapping[str, object], exec_id: RequestId) -> asyncio.Future[Mapping[str, object]]:
        """Send a user's request under ``exec_id``; the future gets the reply, or TransportError if
        the connection goes first. Cancelling the future does not unsend a request already written;
        one still queued (a domain's, behind a command libvirt waits on) is never sent.

        :raise TransportError: not connected.
        :raise Unsendable: the message is not strict JSON (nothing is sent).
        """

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run a command for qmpsh itself and return its ``return`` value; the hooks never see it.

        :raise CommandError: the server answered with an error.
        :raise TransportError: no answer.
        """

    async def close(self) -> str | None:
        """Disconnect; why the connection had ended, if it ended by a fault. Runs to its end even if
        the caller is cancelled, and the cancellation goes on after it."""


CLOSE_GRACE = 5.0  # seconds a cancelled close still waits for the disconnect


async def close_within_grace(disconnect: Coroutine[object, object, str | None]) -> str | None:
    """Run a transport's ``disconnect``; what it returns (why the connection had ended, if it had).

    A cancelled caller (leaving the prompt while a lost connection is being closed, a signal) still
    gets the disconnect run to its end, for up to CLOSE_GRACE seconds, and the cancellation goes on
    after it: cut short, a socket stays open (a launched QEMU is told to quit on a new connection,
    which it never greets while this one stays open). A second cancellation gives up at once, so a
    disconnect that hangs never makes qmpsh deaf to Ctrl-C or SIGTERM.
    """
    closing = asyncio.ensure_future(disconnect)
    try:
        await asyncio.wait((closing,))
    except asyncio.CancelledError:
        await asyncio.wait((closing,), timeout=CLOSE_GRACE)
        raise
    return closing.result()
