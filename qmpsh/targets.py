"""``/domains`` and ``/connect``: a libvirt connection's running domains, and moving the session
to another domain or socket without leaving the shell.

libvirt is asked only when a line needs it (``/domains``, ``/connect NAME``, Tab after
``/connect `` in a session that uses libvirt): a socket session never starts a libvirt daemon
by itself.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qmpsh.transport import ConnectFailure

if TYPE_CHECKING:
    from qmpsh.session import Session
    from qmpsh.syntax import Builtin
    from qmpsh.transport import Transport

#: How old the domain names Tab offers may be before they are asked for again, in seconds.
NAMES_MAX_AGE = 5.0


@dataclass
class DomainNames:
    """The running domains' names, for Tab after ``/connect ``: kept from the last listing."""

    names: list[str] = field(default_factory=list)
    at: float = 0.0  # time.monotonic() of the listing; 0: never listed
    task: asyncio.Task[list[str] | None] | None = None

    def got(self, names: list[str]) -> None:
        self.names, self.at = names, time.monotonic()


_LISTINGS: weakref.WeakKeyDictionary[Session, DomainNames] = weakref.WeakKeyDictionary()


def domain_names(session: Session) -> DomainNames:
    """The session's last listing of domain names, made on first use (a plain socket script never needs it)."""
    known = _LISTINGS.get(session)
    if known is None:
        known = _LISTINGS[session] = DomainNames()
    return known


async def is_address(session: Session, target: str) -> bool:
    """A socket's address rather than a domain's name: a path with a "/" (``./NAME`` for a file
    here), or ``HOST:PORT``. A plain NAME is the running domain of that name; only when none runs
    and a file NAME is here, that file. libvirt is asked only then: a file and a domain share NAME.
    """
    from qmpsh.client import parse_address

    if "/" in target or not isinstance(parse_address(target), str):
        return True
    return os.path.exists(target) and target not in (await _running_names(session) or [])


def _libvirt_uri(session: Session) -> str | None:
    """The URI of the session's libvirt connection: -c, else libvirt's default."""
    return session.options.libvirt_uri


async def _domains(session: Session, name: str) -> tuple[str, list[tuple[str, int, str]]] | None:
    """The URI and its running domains; None when it failed, said in one line."""
    try:
        from qmpsh.libvirt_transport import LibvirtTransportError, running_domains
    except ImportError as err:
        session.renderer.error(f"/{name}: {err}")
        return None
    try:
        uri, found = await running_domains(_libvirt_uri(session))
    except LibvirtTransportError as err:
        session.renderer.error(f"/{name}: {err}")
        return None
    domain_names(session).got([row[0] for row in found])
    return uri, found


async def list_domains(session: Session, cmd: Builtin) -> bool:
    """The running domains: a JSON list in scripts, a line each at a terminal."""
    if cmd.words or cmd.args:
        session.renderer.error("usage: /domains")
        return False
    listed = await _domains(session, "domains")
    if listed is None:
        return False
    uri, found = listed
    from qmpsh.views import DomainRow, DomainsTable

    rows = [DomainRow(name=name, id=number, state=state) for name, number, state in found]
    session.renderer.show(DomainsTable(rows, uri))
    return True


async def connect(session: Session, cmd: Builtin) -> bool:
    """Move the session to domain NAME or to the socket ADDRESS, once it is connected."""
    if len(cmd.words) != 1 or cmd.args:
        session.renderer.error("usage: /connect DOMAIN | /connect ADDRESS")
        return False
    if session.launched is not None:
        session.renderer.error("/connect: not in a --launch session: qmpsh stops the QEMU it launched as it leaves")
        return False
    target = cmd.words[0]
    was_domain = session.transport.domain is not None
    to_socket = await is_address(session, target)
    transport: Transport
    if to_socket:
        from qmpsh.client import SocketTransport, parse_address

        transport = SocketTransport(parse_address(target), tap=session.tap)
    else:
        try:
            from qmpsh.domain import DomainTransport
        except ImportError as err:
            session.renderer.error(f"/connect: {err}")
            return False
        transport = DomainTransport(target, _libvirt_uri(session), tap=session.tap)
    try:
        await session.switch(transport)
    except ConnectFailure as err:
        where = f"cannot connect to {transport.where}: " if to_socket else ""
        still = "" if session.lost else f" (still connected to {session.transport.where})"
        session.renderer.error(f"/connect: {where}{err}{still}")
        return False
    session.renderer.note(f"connected to {session.transport.where}")
    if not was_domain and not to_socket:
        from qmpsh.domain import TAINT_NOTE

        session.renderer.note(TAINT_NOTE)
    return True


def names_for_tab(session: Session) -> list[str]:
    """The names known now; asked for again in the background when older than NAMES_MAX_AGE, in a
    session that uses libvirt (--domain, or a /domains or /connect that listed them)."""
    known = domain_names(session)
    uses_libvirt = session.options.libvirt or known.at > 0
    if uses_libvirt and time.monotonic() - known.at > NAMES_MAX_AGE and (known.task is None or known.task.done()):
        known.task = asyncio.ensure_future(_running_names(session))
    return known.names


async def _running_names(session: Session) -> list[str] | None:
    """The running domains' names, kept for Tab too; None, and nothing said, when libvirt cannot tell."""
    try:
        from qmpsh.libvirt_transport import LibvirtTransportError, running_domains
    except ImportError:
        return None
    try:
        _, found = await running_domains(_libvirt_uri(session))
    except LibvirtTransportError:
        return None
    names = [row[0] for row in found]
    domain_names(session).got(names)
    return names
