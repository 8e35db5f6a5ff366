"""``qmpsh --domain`` at a real terminal: the domain's events, and its loss, come in above the prompt."""

from __future__ import annotations

import subprocess
import time


from tests.conftest import Qemu
from tests.interactive.ptyterm import ENTER, PROMPT, TAB, Terminal, parse_row
from tests.interactive.test_pty_completion import type_and_tab
from tests.libvirt_fixtures import (
    Daemons,
    Domain,
    create_domain,
    destroy_domain,
    frozen,
    libvirt_clients,
    tool,
    virsh,
)


def at_domain(domain: Domain, *args: str, cpr: bool = False) -> Terminal:
    """qmpsh --domain at a terminal, at its first prompt."""
    term = Terminal(None, "--domain", domain.name, "-c", domain.uri, *args, cpr=cpr)
    term.prompt = f"({domain.name}) "  # the prompt names the domain
    term.wait_prompt()
    return term



def test_an_event_from_the_domain_appears_above_the_prompt(libvirt_domain: Domain):
    term = at_domain(libvirt_domain)
    assert term.rows_with("tainted (custom-monitor)"), term.dump()  # said once, at connect
    term.send("query-sta")
    term.wait_prompt("query-sta")
    virsh("resume", libvirt_domain.name, uri=libvirt_domain.uri)  # libvirt's own client: QEMU sends RESUME
    try:
        def event_above_prompt() -> bool:
            events = term.rows_with("RESUME")
            return bool(events) and events[0] < term.screen.cursor.y and term.cursor_row == term.prompt + "query-sta"

        term.wait_for(event_above_prompt, "the RESUME event above the prompt")
        (row,) = term.rows_with("RESUME")
        assert parse_row(term.rows[row])["event"] == "RESUME", term.dump()
        term.send("tus" + ENTER)
        term.wait_text('"status": "running"')
        term.wait_prompt()
        assert term.rows_with('"status": "running"')[0] > row, term.dump()
    finally:
        virsh("suspend", libvirt_domain.name, uri=libvirt_domain.uri)  # the shared domain stays paused
        term.close()


def test_tab_completes_libvirts_node_names(libvirt_domain: Domain):
    term = at_domain(libvirt_domain)
    try:
        type_and_tab(term, "block-stream device=", ["libvirt-1-format", "libvirt-1-storage"])
    finally:
        term.close()


def toolbar(term: Terminal) -> str:
    return term.rows[-1]  # prompt_toolkit draws the toolbar there when the terminal answers CPR


def test_connect_completes_a_domain_and_moves_there_then_to_a_socket(libvirt_daemons: Daemons,
                                                                     libvirt_domain: Domain, qemu: Qemu):
    other = create_domain(libvirt_daemons.uri, "qmpsh-test-connect-")
    term = at_domain(libvirt_domain, cpr=True)
    try:
        term.wait_for(lambda: toolbar(term).startswith(f" domain {libvirt_domain.name} │ QEMU "), "the domain's name")
        term.send("/connect qmpsh-test-conn")
        written = f"{term.prompt}/connect {other.name}"
        deadline = time.monotonic() + 20
        while term.cursor_row != written:  # names are listed in the background as the shell starts: a
            assert time.monotonic() < deadline, term.dump()  # loaded machine may take a few Tabs
            term.send(TAB)
            term.pump(0.5)
        term.send(ENTER)
        term.wait_text(f"connected to {other.name} at {other.uri}")
        term.prompt = f"({other.name}) "  # the prompt names the domain it is at now
        term.wait_prompt()
        term.wait_for(lambda: toolbar(term).startswith(f" domain {other.name} │ QEMU "), "the other domain's name")
        term.run("query-name", f'"name": "{other.name}"')
        term.send(f"/connect {qemu.socket}" + ENTER)
        term.wait_text(f"connected to {qemu.socket}")
        term.prompt = PROMPT  # a socket's
        term.wait_prompt()
        term.wait_for(lambda: toolbar(term).startswith(" connected │ QEMU "), "a socket's toolbar")
        type_and_tab(term, "block-stream device=", ["node-A"])  # the live values are the new QEMU's
    finally:
        term.close()
        destroy_domain(other)


def said_above_the_prompt(term: Terminal, text: str, typed: str) -> None:
    """Wait for ``text`` (wrapped, perhaps) above the prompt, with what was typed still on it."""
    def above() -> bool:
        rows = term.rows_with(text[:40])
        screen = "".join(term.rows)  # the rows are the screen's width: a wrapped line reads whole
        return (bool(rows) and rows[0] < term.screen.cursor.y and text in screen
                and term.cursor_row == term.prompt + typed)

    term.wait_for(above, f"{text!r} above the prompt")


def drop_libvirt_clients(pid: int) -> None:
    """libvirtd drops every connection of process ``pid``, as when it stops or loses the client."""
    for client in libvirt_clients(pid):
        subprocess.run([tool("virt-admin"), "client-disconnect", "libvirtd", client], check=False, capture_output=True)


def test_a_dropped_libvirt_connection_is_said_as_it_happens(libvirt_domain: Domain):
    term = at_domain(libvirt_domain)
    try:
        term.send("query-na")
        drop_libvirt_clients(term.child.pid)
        # "it failed (libvirtd stopped, or dropped this client)", or "libvirtd hung up": libvirt's to say
        said_above_the_prompt(term, f"connection to QEMU lost: the connection to libvirtd at {libvirt_domain.uri} "
                                    "is closed: ", "query-na")
        term.wait_text("/reconnect to try again")
    finally:
        term.close()


def test_reconnect_gets_a_dropped_libvirt_connection_back(libvirt_domain: Domain):
    """libvirtd is shared here and never restarted by a test: it dropping qmpsh's connection
    (virt-admin client-disconnect) is what qmpsh sees of a restart: the close callback, then a
    new connection to the domain."""
    term = at_domain(libvirt_domain, "--reconnect")
    try:
        drop_libvirt_clients(term.child.pid)
        term.wait_text("connection to QEMU lost: the connection to libvirtd")
        term.wait_text("reconnected after 1 attempt")
        term.run("query-name", f'"name": "{libvirt_domain.name}"')
    finally:
        term.close()


def test_a_request_given_up_on_before_its_turn_is_never_sent(own_domain: Domain):
    term = at_domain(own_domain, "--timeout", "2")
    try:
        term.run("query-status", '"running": false')  # the schema is loaded: nothing waits for it below
        with frozen(own_domain):  # libvirt waits for QEMU's reply to query-name, and cont waits behind it
            term.run("query-name", "no reply to query-name within 2 s")
            term.run("cont", "no reply to query-name within 2 s")
        term.wait_text("late reply to query-name")
        term.run("query-status", '"running": false')  # cont was given up on before its turn: never sent
    finally:
        term.close()


def test_a_destroyed_domain_is_said_as_it_happens(own_domain: Domain):
    term = at_domain(own_domain)
    try:
        term.send("query-na")
        virsh("destroy", own_domain.name, uri=own_domain.uri)
        said_above_the_prompt(term, f"connection to QEMU lost: domain '{own_domain.name}' was destroyed; "
                                    "/reconnect to try again", "query-na")
    finally:
        term.close()
