"""A libvirt domain's QEMU monitor as a QMP transport (prototype for ``--domain``).

Commands go through ``virDomainQemuMonitorCommand`` in one worker thread, one at a time and in
the order they were sent, because libvirt-python's calls block. QEMU's events come through
``qemuMonitorEventRegister``, dispatched by libvirtaio on the running asyncio loop, and are
handed on in the order libvirt delivers them. libvirt's own message ids never show: the user's id
is taken off before sending and put back on the reply. Every libvirt failure is a
``LibvirtTransportError`` whose message is one line.

libvirt-python is an optional extra; importing this module without it raises an ImportError
that says what to install.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import itertools
import json
import os
import queue
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

INSTALL = "pip install 'qmpsh[libvirt]'"

try:
    import libvirt  # type: ignore[import-untyped]  # libvirt-python ships no py.typed
    import libvirt_qemu  # type: ignore[import-untyped]
    import libvirtaio  # type: ignore[import-untyped]
except ImportError as exc:
    raise ImportError(f"libvirt domains need libvirt-python: {INSTALL}", name=exc.name) from None

T = TypeVar("T")
Message = dict[str, Any]

CLOSE_REASONS = {  # why_closed, after "the connection to libvirtd at URI is closed: "
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "it failed (libvirtd stopped, or dropped this client)",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "libvirtd hung up",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "libvirtd stopped answering",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "qmpsh closed it",
}
STOPPED = {  # why the domain's QEMU is gone, after "domain 'NAME' "
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shut down",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "was destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "was migrated to another host",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "was saved to a file and stopped",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "was stopped to restore a snapshot",
}
DENIED = {
    libvirt.VIR_ERR_OPERATION_DENIED,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
    libvirt.VIR_ERR_ACCESS_DENIED,
}
NOT_RUNNING_ERRNOS = {errno.ENOENT, errno.ECONNREFUSED}
CLOSED_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN}
END_GRACE = 1.0  # seconds a command that failed in libvirt waits for libvirt to say why


class LibvirtTransportError(Exception):
    """libvirt failed; the message is one line a user can act on."""


class _Worker(Executor):
    """One daemon thread that runs the calls given to it, in order.

    A call may never end (libvirt waits without end for a QEMU that does not answer): as a daemon,
    the thread never holds up qmpsh's exit, as a ThreadPoolExecutor's would.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._given = 0  # counted by the callers' thread only
        self._done = 0  # counted by the worker only
        threading.Thread(target=self._run, name="qmpsh-libvirt", daemon=True).start()

    @property
    def busy(self) -> bool:
        """A call given to it is not done yet."""
        return self._given > self._done

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._given += 1
        self._calls.put((future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """End the thread after the calls given so far (never waited for)."""
        self._calls.put(None)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn = call
            del call
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - raised again by the caller
                    future.set_exception(exc)
            self._done += 1
            del future, fn  # nothing of the call is kept: a libvirt domain object keeps its connection


class _LoopImpl(libvirtaio.virEventAsyncIOImpl):  # type: ignore[misc]
    """libvirtaio's event loop adapter, made safe for calls from the worker thread.

    libvirt adds, updates and removes its watches and timers from whichever thread is talking to
    libvirtd, and asyncio's loop may only be touched from its own thread. A call from elsewhere
    is queued and run on the loop, and a call on the loop runs what is queued first, so libvirt's
    calls take effect in the order it made them. Ids are this class's own, given out at once.
    An id libvirt uses after removing it is ignored, as libvirt's own event loop does.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._loop_thread = threading.get_ident()
        self._queued: collections.deque[Callable[[], object]] = collections.deque()
        self._ids = itertools.count(1)
        self._inner: dict[int, int] = {}  # our id -> libvirtaio's

    def _run(self, op: Callable[[], object]) -> None:
        if self.loop.is_closed():
            return  # a connection left open until the interpreter exits: nothing is watched anymore
        if threading.get_ident() == self._loop_thread:
            self._flush()
            op()
        else:
            self._queued.append(op)
            self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        while self._queued:
            self._queued.popleft()()

    def _add(self, add: Callable[[], int]) -> int:
        ours = next(self._ids)
        self._run(lambda: self._inner.__setitem__(ours, add()))
        return ours

    def _on(self, ours: int, op: Callable[[int], object], remove: bool = False) -> None:
        def run() -> None:
            inner = self._inner.pop(ours, None) if remove else self._inner.get(ours)
            if inner is not None:
                op(inner)
        self._run(run)

    def _add_handle(self, fd: int, event: int, cb: Any, opaque: Any) -> int:
        base: Any = super()
        return self._add(lambda: base._add_handle(fd, event, cb, opaque))

    def _update_handle(self, watch: int, event: int) -> None:
        base: Any = super()
        self._on(watch, lambda inner: base._update_handle(inner, event))

    def _remove_handle(self, watch: int) -> int:
        base: Any = super()
        self._on(watch, base._remove_handle, remove=True)
        return 0

    def _add_timeout(self, timeout: int, cb: Any, opaque: Any) -> int:
        base: Any = super()
        return self._add(lambda: base._add_timeout(timeout, cb, opaque))

    def _update_timeout(self, timer: int, timeout: int) -> None:
        base: Any = super()
        self._on(timer, lambda inner: base._update_timeout(inner, timeout))

    def _remove_timeout(self, timer: int) -> int:
        base: Any = super()
        self._on(timer, base._remove_timeout, remove=True)
        return 0


_impl: _LoopImpl | None = None


def _bind_loop() -> asyncio.AbstractEventLoop:
    """Run libvirt's events on the running loop; libvirt-python takes one loop per process."""
    global _impl
    loop = asyncio.get_running_loop()
    if _impl is None:
        _impl = _LoopImpl(loop)
        _impl.register()
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # not printed on stderr: raised
    elif _impl.loop is not loop:
        raise LibvirtTransportError("libvirt's events already run on another asyncio loop of this process")
    return loop


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: libvirt.libvirtError, uri: str, domain: str) -> str:
    """A libvirt error as one line that says what went wrong: daemon, domain, permission, connection."""
    code = exc.get_error_code()
    message = _one_line(exc.get_error_message() or str(exc))
    err = exc.get_int1() if code == libvirt.VIR_ERR_SYSTEM_ERROR else 0
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return f"no domain '{domain}' at {uri}"
    if code == libvirt.VIR_ERR_OPERATION_INVALID and "not running" in message:
        return f"domain '{domain}' is not running (virsh -c {uri} start {domain})"
    if code in DENIED or err in (errno.EACCES, errno.EPERM):
        return f"permission denied by libvirt at {uri}: {message}"
    if err in NOT_RUNNING_ERRNOS:
        return f"libvirtd is not running at {uri}: {message}"
    if err in CLOSED_ERRNOS and urllib.parse.urlsplit(uri).hostname:  # qemu+ssh://HOST/...: ssh failed
        return f"the remote connection to libvirtd at {uri} failed: {_remote_reason(message, err)}"
    if code == libvirt.VIR_ERR_NO_CONNECT or err in CLOSED_ERRNOS or "socket is closed" in message:
        return f"the connection to libvirtd at {uri} is closed: {message}"
    return f"libvirt at {uri}: {message}"


def _remote_reason(message: str, err: int) -> str:
    """libvirt's message for a remote connection that failed, without its wrapping: ssh's own words."""
    for wrapping in ("Cannot recv data: ", "Cannot write data: "):
        message = message.removeprefix(wrapping)
    return message.removesuffix(f": {os.strerror(err)}")


def _lookup(conn: libvirt.virConnect, domain: str) -> libvirt.virDomain:
    """A domain by name, UUID or id, as virsh takes it."""
    try:
        return conn.lookupByName(domain)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        if domain.isdigit():
            return conn.lookupByID(int(domain))
        if len(domain) == 36 and domain.count("-") == 4:
            return conn.lookupByUUIDString(domain)
        raise


def encode(msg: Mapping[str, object]) -> str:
    """Strict JSON, as QEMU and libvirt read it: no NaN or Infinity."""
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class LibvirtTransport:
    """A connection to one running libvirt domain's QEMU monitor.

    Open it with ``await LibvirtTransport.open(domain, uri)``. ``send`` returns QEMU's reply;
    ``events`` yields QEMU's events until the connection closes or the domain stops (libvirt says
    so at once: its close callback, its lifecycle event); ``failure`` says which.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: _Worker, uri: str, name: str) -> None:
        self.uri = uri
        self.domain = name
        self.why_closed: str | None = None  # why the connection to libvirtd closed (CLOSE_REASONS)
        self.why_stopped: str | None = None  # "domain 'NAME' was destroyed", ... (STOPPED)
        self._loop = loop
        self._executor = executor
        self._conn: libvirt.virConnect | None = None
        self._dom: libvirt.virDomain | None = None
        self._events: asyncio.Queue[Message | None] = asyncio.Queue()
        self._event_callback: int | None = None
        self._lifecycle_callback: int | None = None
        self._ended = asyncio.Event()  # set with why_stopped or why_closed

    @property
    def failure(self) -> str | None:
        """Why the domain's monitor cannot be used any more, in one line; None while it can."""
        if self.why_stopped is not None:
            return self.why_stopped
        if self.why_closed is not None:
            return f"the connection to libvirtd at {self.uri} is closed: {self.why_closed}"
        return None

    @property
    def where(self) -> str:
        """What it is connected to, for messages: ``DOMAIN at URI``."""
        return f"{self.domain} at {self.uri}"

    @classmethod
    async def open(cls, domain: str, uri: str | None = None, *, readonly: bool = False) -> LibvirtTransport:
        """Connect to libvirtd (``uri``, else ``LIBVIRT_DEFAULT_URI``, else libvirt's default) and
        to ``domain``'s monitor; QEMU's events are delivered from now on.

        :raise LibvirtTransportError: libvirtd not running, no such domain, domain not running,
            permission denied, or any other libvirt failure, in one line.
        """
        loop = _bind_loop()
        shown = uri or os.environ.get("LIBVIRT_DEFAULT_URI") or "libvirt's default URI"
        transport = cls(loop, _Worker(), shown, domain)
        try:
            if not await transport._call(transport._connect, uri, readonly):
                raise LibvirtTransportError(
                    f"domain '{transport.domain}' is not running (virsh -c {transport.uri} start {transport.domain})")
        except LibvirtTransportError:
            await transport.close()
            raise
        except asyncio.CancelledError:  # Ctrl-C, a timeout: the worker may be connecting still
            transport._executor.submit(transport._let_go)  # after the connect, in the same thread
            transport._executor.shutdown(wait=False)
            raise
        return transport

    def _connect(self, uri: str | None, readonly: bool) -> bool:
        """Connect and look the domain up; False if it is not running. Events are delivered from now on."""
        conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
        self._conn = conn
        self.uri = conn.getURI()
        dom = _lookup(conn, self.domain)
        self.domain = dom.name()
        if not dom.isActive():
            return False  # not raised from here: a traceback would keep dom, and dom the connection
        self._dom = dom
        conn.registerCloseCallback(self._on_close, None)
        conn.setKeepAlive(5, 3)
        self._event_callback = libvirt_qemu.qemuMonitorEventRegister(conn, dom, None, self._on_event, None, 0)
        self._lifecycle_callback = conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                               self._on_lifecycle, None)
        return True

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker thread, with libvirt's errors made one line."""
        try:
            return await self._loop.run_in_executor(self._executor, fn, *args)
        except libvirt.libvirtError as exc:
            message = self._explain(exc)
        # out here, with no libvirtError as its context: that one's traceback holds the worker's
        # frames, whose domain objects would keep the connection to libvirtd open
        if self._dom is not None and self.failure is None:
            # a command failed in libvirt: the domain went (its monitor is reset, or it is no more),
            # or libvirtd did; libvirt's lifecycle event or close callback says which, a moment later
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), END_GRACE)
            message = self.failure or message
        raise LibvirtTransportError(message)

    def _gone(self, exc: libvirt.libvirtError) -> bool:
        """The error says the domain this connection was using is not running any more."""
        code = exc.get_error_code()
        not_running = code == libvirt.VIR_ERR_OPERATION_INVALID and "not running" in (exc.get_error_message() or "")
        return self._dom is not None and (code == libvirt.VIR_ERR_NO_DOMAIN or not_running)

    def _explain(self, exc: libvirt.libvirtError) -> str:
        if self.failure is not None:
            return self.failure
        if self._gone(exc):
            return f"domain '{self.domain}' is not running anymore: it was destroyed or shut down"
        return describe(exc, self.uri, self.domain)

    async def send(self, message: Mapping[str, object]) -> Message:
        """Send one QMP command and return QEMU's reply, errors included, with the caller's id.

        :raise LibvirtTransportError: the command did not reach QEMU or its reply did not come back.
        :raise ValueError: the message is not strict JSON (nothing is sent).
        """
        command = dict(message)
        has_id = "id" in command
        user_id = command.pop("id", None)
        text = encode(command)
        if self.why_stopped is not None:
            raise LibvirtTransportError(self.why_stopped)
        if self._dom is None:
            raise LibvirtTransportError(f"not connected to {self.where}: {self.why_closed or 'closed'}")
        answer = await self._call(libvirt_qemu.qemuMonitorCommand, self._dom, text, 0)
        try:
            reply: Message = json.loads(answer)
        except ValueError:  # would otherwise end the sender of every later command too
            raise LibvirtTransportError(f"{self.where}: the reply is not JSON: {answer[:80]!r}") from None
        reply.pop("id", None)
        if has_id:
            reply["id"] = user_id
        return reply

    async def query(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run ``command`` and return its ``return`` value.

        :raise LibvirtTransportError: QEMU answered with an error, or no answer came.
        """
        message: Message = {"execute": command}
        if arguments:
            message["arguments"] = dict(arguments)
        reply = await self.send(message)
        if "error" in reply:
            raise LibvirtTransportError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    async def events(self) -> AsyncIterator[Message]:
        """QEMU's events as QMP messages, in libvirt's order, until the connection closes (one reader)."""
        while (event := await self._events.get()) is not None:
            yield event

    def _on_event(self, _conn: Any, _dom: Any, event: str, seconds: int, micros: int, details: str | None,
                  _opaque: Any) -> None:
        message: Message = {"timestamp": {"seconds": seconds, "microseconds": micros}, "event": event}
        if details is not None:
            message["data"] = json.loads(details)
        self._post(self._events.put_nowait, message)

    def _on_lifecycle(self, _conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._post(self._stopped, f"domain '{self.domain}' {STOPPED.get(detail, 'stopped')}")

    def _stopped(self, why: str) -> None:
        if self.why_stopped is None and self.why_closed is None:
            self.why_stopped = why
            self._ended.set()
            self._events.put_nowait(None)

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        # libvirt calls this from whichever thread saw the connection go, the worker's too
        self._post(self._closed, CLOSE_REASONS.get(reason, f"closed ({reason})"))

    def _post(self, fn: Callable[[T], object], arg: T) -> None:
        """``fn(arg)`` on the loop, after what was posted before; dropped once the loop is closed."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, arg)

    def _closed(self, why: str) -> None:
        if self.why_closed is None:
            self.why_closed = why
            self._ended.set()
            self._events.put_nowait(None)

    async def close(self) -> str | None:
        """Deregister, disconnect and stop the worker; ``failure`` as it was before, if there was one."""
        why = self.failure
        conn, self._conn, self._dom = self._conn, None, None
        if conn is not None and self._executor.busy:  # a call that may never end: not waited for
            self._executor.submit(self._disconnect, conn)
        elif conn is not None:
            await self._loop.run_in_executor(self._executor, self._disconnect, conn)
        self._executor.shutdown(wait=False)
        self._closed(CLOSE_REASONS[libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT])
        return why

    def _let_go(self) -> None:
        """In the worker, once a connect nobody waits for any more is done: disconnect what it made."""
        conn, self._conn, self._dom = self._conn, None, None
        if conn is not None:
            self._disconnect(conn)

    def _disconnect(self, conn: libvirt.virConnect) -> None:
        callback, lifecycle = self._event_callback, self._lifecycle_callback
        for step in (
            lambda: callback is not None and libvirt_qemu.qemuMonitorEventDeregister(conn, callback),
            lambda: lifecycle is not None and conn.domainEventDeregisterAny(lifecycle),
            conn.unregisterCloseCallback,
            conn.close,
        ):
            try:
                step()
            except libvirt.libvirtError:
                pass  # the connection is already gone: nothing left to undo


STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


def _running_domains(uri: str | None) -> tuple[str, list[tuple[str, int, str]]]:
    conn = libvirt.openReadOnly(uri)
    try:
        found = []
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                state = dom.state()[0]
                found.append((dom.name(), dom.ID(), STATES.get(state, f"state {state}")))
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                # it stopped since it was listed: not running any more, so not listed
        return conn.getURI(), sorted(found, key=lambda row: row[1])
    finally:
        conn.close()


async def running_domains(uri: str | None = None) -> tuple[str, list[tuple[str, int, str]]]:
    """The URI connected to, and its running (active: paused too) domains as (name, id, state), by id.

    A read-only connection of its own, in a thread of its own: listing needs no write access.

    :raise LibvirtTransportError: libvirtd not running, permission denied, ... in one line.
    """
    shown = uri or os.environ.get("LIBVIRT_DEFAULT_URI") or "libvirt's default URI"
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # not printed on stderr: raised
    try:
        return await asyncio.wait_for(_in_a_thread_of_its_own(_running_domains, uri), LIST_TIMEOUT)
    except libvirt.libvirtError as exc:
        message = describe(exc, shown, "")
    except TimeoutError:
        message = f"no answer from libvirtd at {shown} in {LIST_TIMEOUT:g} s"
    raise LibvirtTransportError(message)  # out here: the libvirtError's traceback holds the thread's objects


LIST_TIMEOUT = 15.0  # seconds a listing of domains may take (an unreachable host over ssh)


async def _in_a_thread_of_its_own(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a daemon thread: one that hangs (a host that never answers) is given up on,
    and never holds up qmpsh's exit as a thread of asyncio's default executor would."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # noqa: BLE001 - raised again by the waiting coroutine
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_settle, done, result, error)
        except RuntimeError:
            pass  # the loop is closed: qmpsh has ended, and nobody waits for this any more

    threading.Thread(target=work, name="qmpsh-libvirt-list", daemon=True).start()
    return await done


def _settle(done: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if done.done():
        return  # given up on (the timeout)
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
