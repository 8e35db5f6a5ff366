"""The QMP connection, over qemu.qmp's async ``QMPClient``.

``Connection`` hands every message to its owner in wire order: ``on_sent``
as each message is written, ``on_received`` as each reply or event is read
(before the waiting caller wakes), so replies and events can be printed in
exactly the order QEMU sent them. It also replaces qemu.qmp's debug-logging
hooks, which stringify every message even when nobody logs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Protocol, Union

from qemu.qmp import QMPClient
from qemu.qmp.message import Message
from qemu.qmp.protocol import Runstate

Address = Union[str, tuple[str, int]]
MessageHook = Callable[[Message], None]


class WireTap(Protocol):
    """Sees every message both ways, greeting and negotiation included (--logfile)."""

    def sent(self, msg: Message) -> None: ...

    def received(self, msg: Message) -> None: ...

# qemu.qmp logs errors (e.g. "Failed to establish connection") that qmpsh
# reports itself in one line; keep them off the user's terminal.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False

_HOST_PORT = re.compile(r"^\[?([^\[\]]*?)\]?:(\d+)$")


def parse_address(text: str) -> Address:
    """A unix socket path, or ``HOST:PORT`` (``[::1]:4444`` for IPv6)."""
    match = _HOST_PORT.match(text)
    if match and "/" not in text:
        return (match.group(1) or "localhost", int(match.group(2)))
    return text


def describe_address(address: Address) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


class Connection(QMPClient):
    """A QMPClient whose traffic is tapped in wire order."""

    def __init__(self, *, on_sent: MessageHook, on_received: MessageHook, tap: WireTap | None = None) -> None:
        super().__init__("qmpsh")
        self._on_sent = on_sent
        self._on_received = on_received
        self._tap = tap
        # Events reach the owner through on_received; qemu.qmp's default
        # listener would otherwise keep every event forever.
        self._listeners.clear()

    def _cb_outbound(self, msg: Message) -> Message:
        if self._tap:
            self._tap.sent(msg)
        self._on_sent(msg)
        return msg

    def _cb_inbound(self, msg: Message) -> Message:
        if self._tap:
            self._tap.received(msg)
        return msg

    async def _on_message(self, msg: Message) -> None:
        self._on_received(msg)
        if "event" in msg:
            return
        exec_id = msg.get("id")
        if exec_id in self._pending:
            await self._pending[exec_id].put(msg)
        # A reply nobody waits for any more (e.g. after Ctrl-C) was already
        # shown by on_received; qemu.qmp would drop it or treat an id-less
        # error as fatal.

    async def send(self, msg: dict[str, object], exec_id: str) -> Message:
        """Send a request under ``exec_id`` and return the raw reply message."""
        msg = dict(msg)
        msg["id"] = exec_id
        return await self._raw(msg, assign_id=False)

    @property
    def running(self) -> bool:
        return self.runstate == Runstate.RUNNING
