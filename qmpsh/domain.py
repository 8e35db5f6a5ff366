"""``--domain``: a libvirt domain's monitor as a ``transport.Transport``.

``DomainTransport`` wraps ``libvirt_transport.LibvirtTransport``, which sends one command at a
time through libvirt and yields QEMU's events, and gives the session what a socket gives it:
hooks that see user requests, replies and events in order, futures for replies, queries the hooks
never see, and ``transport``'s errors. User requests are sent by one task, in the order they were
submitted, so pipelined replies come back in order. libvirt may hand on an event a little after
the reply it came before on QEMU's own wire: events keep their order among themselves.

libvirt-python is an optional extra; importing this module without it raises the ImportError
of ``libvirt_transport``, which says what to install.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from qmpsh.client import encode
from qmpsh.libvirt_transport import LibvirtTransport, LibvirtTransportError
from qmpsh.transport import (
    CommandError,
    ConnectFailure,
    MessageHook,
    RequestId,
    TransportError,
    WireTap,
    close_within_grace,
)

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON

#: How long connecting may take when no --timeout is given.
CONNECT_TIMEOUT = 30.0
#: Said once at connect, in --help and in the README.
TAINT_NOTE = ("libvirt marks the domain tainted (custom-monitor) once a command is sent through its "
              "monitor: 'virsh dominfo' and the domain's log say so")

_Pending = tuple[dict[str, object], "asyncio.Future[Mapping[str, object]]"]


def _ignore(msg: Mapping[str, object]) -> None:
    pass


class DomainTransport:
    """A running libvirt domain's QEMU monitor, connected through libvirtd at ``uri``."""

    def __init__(self, domain: str, uri: str | None = None, *, tap: WireTap | None = None) -> None:
        self.domain = domain  # as given (a name, an id, a UUID), then libvirt's name for it
        self.uri = uri  # None: LIBVIRT_DEFAULT_URI, else libvirt's default
        self.where = f"domain '{domain}'"
        self.last_activity = time.monotonic()
        self.connections = 0
        self._tap = tap
        self._on_sent: MessageHook = _ignore
        self._on_received: MessageHook = _ignore
        self._link: LibvirtTransport | None = None
        self._version: Mapping[str, object] | None = None
        self._failure: str | None = None  # why the connection stopped working, in one line
        self._changed = asyncio.Event()
        self._outbox: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def label(self) -> str:
        return f"domain {self.domain}"

    def attach(self, on_sent: MessageHook, on_received: MessageHook) -> None:
        self._on_sent, self._on_received = on_sent, on_received

    async def open(self, timeout: float | None = None, wait: float = 0.0) -> None:
        """Connect to libvirtd and the domain's monitor, and ask QEMU its version, all within
        ``timeout`` (CONNECT_TIMEOUT if None); ``wait`` is for sockets: not used.

        :raise ConnectFailure: libvirtd not running, no such domain, domain not running,
            permission denied, no answer in time, ... in one line.
        """
        seconds = timeout or CONNECT_TIMEOUT
        try:
            await asyncio.wait_for(self._open(), seconds)
        except TimeoutError:
            asked = self._link is not None  # connected: QEMU, through libvirt, did not answer query-version
            where = self.where
            await self.close()
            what = f"no reply to query-version from {where}" if asked else "no answer from libvirt"
            raise ConnectFailure(f"{what} within {seconds:g} s") from None
        self.connections += 1
        self._state_changed()

    async def _open(self) -> None:
        try:
            link = await LibvirtTransport.open(self.domain, self.uri)
        except LibvirtTransportError as err:
            raise ConnectFailure(str(err)) from None
        self._link, self._failure = link, None
        self.domain, self.where = link.domain, link.where
        self._outbox = asyncio.Queue()
        self._tasks = [asyncio.ensure_future(self._send_loop(link)), asyncio.ensure_future(self._event_loop(link))]
        try:
            version = await self._query(link, "query-version")
        except TransportError as err:
            await self.close()
            raise ConnectFailure(str(err)) from None
        self._version = version if isinstance(version, dict) else None

    @property
    def running(self) -> bool:
        return self._link is not None and self._failure is None and self._link.failure is None

    async def runstate_changed(self) -> object:
        await self._changed.wait()
        return self.running

    def _state_changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def version(self) -> Mapping[str, object] | None:
        return self._version

    def submit(self, msg: Mapping[str, object], exec_id: RequestId) -> asyncio.Future[Mapping[str, object]]:
        """Queue a user's request under ``exec_id`` (see ``transport.Transport.submit``)."""
        if not self.running:
            raise TransportError("not connected")
        request = {**msg, "id": exec_id}
        encode(request)  # raises Unsendable: nothing sent
        waiter: asyncio.Future[Mapping[str, object]] = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait((request, waiter))
        return waiter

    async def _send_loop(self, link: LibvirtTransport) -> None:
        """Send queued user requests one at a time, handing each reply on in order. A request given
        up on (Ctrl-C, a timeout) before its turn is never sent."""
        while True:
            request, waiter = await self._outbox.get()
            if waiter.done():
                continue
            if not self.running:
                self._fail(waiter)
                continue
            if self._tap:
                self._tap.sent(encode(request))
            self._on_sent(request)
            try:
                reply = await link.send(request)
            except LibvirtTransportError as err:
                self._lost(str(err), first=waiter)
                continue
            self._received(reply)
            if not waiter.done():  # given up on (Ctrl-C, a timeout): shown by on_received all the same
                waiter.set_result(reply)

    def _fail(self, waiter: asyncio.Future[Mapping[str, object]]) -> None:
        if not waiter.done():
            waiter.set_exception(TransportError(self._failure or "disconnected"))

    async def _event_loop(self, link: LibvirtTransport) -> None:
        async for event in link.events():
            self._received(event)
        self._lost(link.failure or f"the connection to libvirtd at {link.uri} is closed")

    def _received(self, msg: Mapping[str, object]) -> None:
        self.last_activity = time.monotonic()
        if self._tap:
            self._tap.received(json.dumps(msg).encode())
        self._on_received(msg)

    def _lost(self, why: str, first: asyncio.Future[Mapping[str, object]] | None = None) -> None:
        """The connection stopped working: fail ``first``, then every request not sent yet, in order."""
        if self._failure is None and self._link is not None:
            self._failure = why
        if first is not None:
            self._fail(first)
        if self._failure is not None:
            while not self._outbox.empty():
                self._fail(self._outbox.get_nowait()[1])
            self._state_changed()

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run a command for qmpsh itself and return its ``return`` value; the hooks never see it."""
        if self._link is None or not self.running:
            raise TransportError("not connected")
        return await self._query(self._link, command, arguments)

    async def _query(self, link: LibvirtTransport, command: str,
                     arguments: Mapping[str, object] | None = None) -> JSON:
        message: dict[str, object] = {"execute": command}
        if arguments:
            message["arguments"] = dict(arguments)
        if self._tap:
            self._tap.sent(encode(message))
        try:
            reply = await link.send(message)
        except LibvirtTransportError as err:
            self._lost(str(err))
            raise TransportError(str(err)) from None
        self.last_activity = time.monotonic()
        if self._tap:
            self._tap.received(json.dumps(reply).encode())
        error = reply.get("error")
        if isinstance(error, dict):
            raise CommandError(str(error.get("class", "GenericError")), str(error.get("desc", "")))
        return reply.get("return")

    async def close(self) -> str | None:
        """Disconnect; why the connection had stopped working, if it had. A cancelled caller still
        gets the disconnect, within a grace (``transport.close_within_grace``)."""
        return await close_within_grace(self._close())

    async def _close(self) -> str | None:
        link, self._link = self._link, None
        why = self._failure
        if link is None:
            return why
        failure = await link.close()
        if why is None:
            why = failure
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while not self._outbox.empty():
            self._fail(self._outbox.get_nowait()[1])
        self._state_changed()
        return why
