"""The libvirt transport against a real libvirtd and a real (paused, TCG) domain.

The session's one domain is shared: a test that runs it leaves it paused again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from qmpsh.libvirt_transport import LibvirtTransport, LibvirtTransportError
from tests.libvirt_fixtures import Domain, create_domain, destroy_domain, inactive_domain, libvirt_clients, tool, virsh

T = TypeVar("T")
BOGUS_SOCKET = "/nonexistent/libvirt-sock"


@pytest.fixture
def run(libvirt_loop: asyncio.AbstractEventLoop):
    """Run a coroutine to its end on the session's libvirt loop."""

    def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return libvirt_loop.run_until_complete(asyncio.wait_for(coro, timeout))

    return run


@pytest.fixture
def transport(run, libvirt_domain: Domain) -> Iterator[LibvirtTransport]:
    opened = run(LibvirtTransport.open(libvirt_domain.name, libvirt_domain.uri))
    try:
        yield opened
    finally:
        run(opened.close())


def test_query_status_round_trip_keeps_the_users_id(run, transport: LibvirtTransport, libvirt_domain: Domain):
    assert transport.where == f"{libvirt_domain.name} at qemu:///system"
    reply = run(transport.send({"execute": "query-status", "id": "mine-1"}))
    assert reply["id"] == "mine-1"
    assert reply["return"]["status"] in ("prelaunch", "paused") and reply["return"]["running"] is False
    assert run(transport.send({"execute": "query-status", "id": 7}))["id"] == 7
    assert "id" not in run(transport.send({"execute": "query-status"}))  # libvirt's "libvirt-N" never shows


def test_an_error_reply_comes_back_as_qemu_sent_it(run, transport: LibvirtTransport):
    reply = run(transport.send({"execute": "no-such-command", "id": "e"}))
    assert reply == {"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"},
                     "id": "e"}
    with pytest.raises(LibvirtTransportError, match=r"^no-such-command: The command no-such-command has not been"):
        run(transport.query("no-such-command"))


def test_block_nodes_have_libvirts_names(run, transport: LibvirtTransport, libvirt_domain: Domain):
    nodes = {node["node-name"]: node for node in run(transport.query("query-named-block-nodes"))}
    assert {"libvirt-1-format", "libvirt-1-storage"} <= set(nodes)
    assert nodes["libvirt-1-format"]["drv"] == "qcow2"
    assert nodes["libvirt-1-format"]["file"] == str(libvirt_domain.image)
    assert nodes["libvirt-1-storage"]["drv"] == "file"


def test_events_arrive_on_the_loop_in_the_order_of_the_commands(run, transport: LibvirtTransport):
    async def flip() -> list[dict]:
        events = transport.events()
        replies = await asyncio.gather(*(transport.send({"execute": cmd, "id": n})
                                         for n, cmd in enumerate(["cont", "stop", "cont", "stop"])))
        assert replies == [{"return": {}, "id": n} for n in range(4)]
        # no libvirt call is in flight now: only libvirtaio, on this loop, can deliver them
        return [await asyncio.wait_for(anext(events), 10) for _ in range(4)]

    events = run(flip())
    assert [event["event"] for event in events] == ["RESUME", "STOP", "RESUME", "STOP"]
    stamps = [(e["timestamp"]["seconds"], e["timestamp"]["microseconds"]) for e in events]
    assert stamps == sorted(stamps) and "data" not in events[0]
    assert run(transport.query("query-status"))["status"] == "paused"


def test_the_loop_runs_while_a_command_is_in_flight(run, transport: LibvirtTransport):
    async def tick_during_schema() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        schema = await transport.query("query-qmp-schema")  # a reply of some 100 kB
        task.cancel()
        return ticks, len(schema)

    ticks, entries = run(tick_during_schema())
    assert entries > 100 and ticks > 20  # a call that blocked the loop would let it tick once or twice


def test_a_block_jobs_events_carry_their_data(run, transport: LibvirtTransport):
    async def stream() -> list[dict]:
        events = transport.events()
        await transport.query("block-stream", {"job-id": "qmpsh-j", "device": "libvirt-1-format"})
        got = []
        while not got or got[-1].get("data", {}).get("status") != "null":
            got.append(await asyncio.wait_for(anext(events), 10))
        return got

    events = run(stream())
    statuses = [e["data"]["status"] for e in events if e["event"] == "JOB_STATUS_CHANGE"]
    assert statuses == ["created", "running", "waiting", "pending", "concluded", "null"]
    (done,) = [e for e in events if e["event"] == "BLOCK_JOB_COMPLETED"]
    assert done["data"]["device"] == "qmpsh-j" and done["data"]["type"] == "stream"


def test_unknown_domain(run, libvirt_daemons):
    with pytest.raises(LibvirtTransportError) as err:
        run(LibvirtTransport.open("qmpsh-no-such-domain", "qemu:///system"))
    assert str(err.value) == "no domain 'qmpsh-no-such-domain' at qemu:///system"


def test_a_defined_domain_that_is_not_running(run, libvirt_daemons):
    with inactive_domain() as name, pytest.raises(LibvirtTransportError) as err:
        run(LibvirtTransport.open(name, "qemu:///system"))
    assert str(err.value) == f"domain '{name}' is not running (virsh -c qemu:///system start {name})"


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def test_a_domain_destroyed_under_a_session(run, libvirt_daemons):
    domain = create_domain(libvirt_daemons.uri, "qmpsh-test-gone-")
    try:
        opened = run(LibvirtTransport.open(domain.name, domain.uri))
        try:
            assert run(opened.query("query-status"))["running"] is False
            events = opened.events()
            virsh("destroy", domain.name)
            # libvirt's lifecycle event ends the events at once, and says how the domain went
            assert {event["event"] for event in run(collect(events), timeout=30)} <= {"SHUTDOWN"}
            assert opened.failure == opened.why_stopped == f"domain '{domain.name}' was destroyed"
            with pytest.raises(LibvirtTransportError) as err:
                run(opened.send({"execute": "query-status"}))
            assert str(err.value) == f"domain '{domain.name}' was destroyed"
        finally:
            run(opened.close())
    finally:
        destroy_domain(domain)


def test_libvirtd_not_running(run):
    uri = f"qemu:///system?socket={BOGUS_SOCKET}"
    with pytest.raises(LibvirtTransportError) as err:
        run(LibvirtTransport.open("any", uri))
    assert str(err.value) == (f"libvirtd is not running at {uri}: "
                              f"Failed to connect socket to '{BOGUS_SOCKET}': No such file or directory")


def test_the_default_uri_comes_from_the_environment(run, libvirt_domain: Domain, monkeypatch):
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", f"qemu:///system?socket={BOGUS_SOCKET}")
    with pytest.raises(LibvirtTransportError, match=r"^libvirtd is not running at qemu:///system[?]socket="):
        run(LibvirtTransport.open(libvirt_domain.name))
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu:///system")
    opened = run(LibvirtTransport.open(libvirt_domain.name))
    assert opened.uri == "qemu:///system"
    run(opened.close())


def test_permission_denied(run, libvirt_domain: Domain):
    with pytest.raises(LibvirtTransportError) as err:
        run(LibvirtTransport.open(libvirt_domain.name, libvirt_domain.uri, readonly=True))
    assert re.fullmatch(r"permission denied by libvirt at qemu:///system: operation forbidden: "
                        r"read only access prevents \w+", str(err.value))


def our_clients() -> list[str]:
    """libvirtd's ids for this process's connections."""
    return libvirt_clients(os.getpid())


def test_a_failed_open_leaves_no_connection_behind(run, libvirt_domain: Domain):
    assert our_clients() == []
    for name, readonly in (("qmpsh-no-such-domain", False), (libvirt_domain.name, True)):
        with pytest.raises(LibvirtTransportError) as err:
            run(LibvirtTransport.open(name, libvirt_domain.uri, readonly=readonly))
        assert our_clients() == [], err.value  # even while the error, and its traceback, are kept


def test_a_cancelled_open_leaves_no_connection_behind(run, libvirt_domain: Domain):
    """Ctrl-C or a timeout while connecting: the worker finishes connecting, and then lets go."""
    async def cancel_while_connecting() -> None:
        opening = asyncio.ensure_future(LibvirtTransport.open(libvirt_domain.name, libvirt_domain.uri))
        await asyncio.sleep(0)  # the worker thread is connecting now
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening

    assert our_clients() == []
    run(cancel_while_connecting())
    deadline = time.monotonic() + 20
    while our_clients():
        assert time.monotonic() < deadline, "the cancelled open's connection to libvirtd stayed open"
        time.sleep(0.1)


def test_the_connection_dropping(run, transport: LibvirtTransport):
    async def drop() -> list[dict]:
        events = transport.events()
        (client,) = await asyncio.to_thread(our_clients)
        await asyncio.to_thread(subprocess.run, [tool("virt-admin"), "client-disconnect", "libvirtd", client],
                                check=True, capture_output=True)
        return [event async for event in events]  # ends when libvirt says the connection closed

    assert run(drop(), timeout=30) == []
    assert transport.why_closed == "it failed (libvirtd stopped, or dropped this client)"
    with pytest.raises(LibvirtTransportError) as err:
        run(transport.send({"execute": "query-status"}))
    assert str(err.value) == ("the connection to libvirtd at qemu:///system is closed: "
                              "it failed (libvirtd stopped, or dropped this client)")
