"""``qmpsh --domain`` at a real terminal: the domain's events come in above the prompt."""

from __future__ import annotations

import time

from tests.conftest import Qemu
from tests.interactive.ptyterm import ENTER, PROMPT, TAB, Terminal, parse_row
from tests.interactive.test_pty_completion import type_and_tab
from tests.libvirt_fixtures import Daemons, Domain, create_domain, destroy_domain, virsh


def test_an_event_from_the_domain_appears_above_the_prompt(libvirt_domain: Domain, terminal):
    term = terminal(None, "--domain", libvirt_domain.name, "-c", libvirt_domain.uri)
    assert term.rows_with("tainted (custom-monitor)"), term.dump()  # said once, at connect
    term.send("query-sta")
    term.wait_prompt("query-sta")
    virsh("resume", libvirt_domain.name, uri=libvirt_domain.uri)  # libvirt's own client: QEMU sends RESUME
    try:
        def event_above_prompt() -> bool:
            events = term.rows_with("RESUME")
            return bool(events) and events[0] < term.screen.cursor.y and term.cursor_row == PROMPT + "query-sta"

        term.wait_for(event_above_prompt, "the RESUME event above the prompt")
        (row,) = term.rows_with("RESUME")
        assert parse_row(term.rows[row])["event"] == "RESUME", term.dump()
        term.send("tus" + ENTER)
        term.wait_text('"status": "running"')
        term.wait_prompt()
        assert term.rows_with('"status": "running"')[0] > row, term.dump()
    finally:
        virsh("suspend", libvirt_domain.name, uri=libvirt_domain.uri)  # the shared domain stays paused


def toolbar(term: Terminal) -> str:
    return term.rows[-1]  # prompt_toolkit draws the toolbar there when the terminal answers CPR


def test_connect_completes_a_domain_and_moves_there_then_to_a_socket(libvirt_daemons: Daemons,
                                                                     libvirt_domain: Domain, qemu: Qemu):
    other = create_domain(libvirt_daemons.uri, "qmpsh-test-connect-")
    term = Terminal(None, "--domain", libvirt_domain.name, "-c", libvirt_domain.uri, cpr=True)
    try:
        term.wait_prompt()
        term.wait_for(lambda: toolbar(term).startswith(f" domain {libvirt_domain.name} │ QEMU "), "the domain's name")
        term.send("/connect qmpsh-test-conn")
        written = f"{PROMPT}/connect {other.name}"
        deadline = time.monotonic() + 20
        while term.cursor_row != written:  # names are listed in the background as the shell starts: a
            assert time.monotonic() < deadline, term.dump()  # loaded machine may take a few Tabs
            term.send(TAB)
            term.pump(0.5)
        term.send(ENTER)
        term.wait_text(f"connected to {other.name} at {other.uri}")
        term.wait_for(lambda: toolbar(term).startswith(f" domain {other.name} │ QEMU "), "the other domain's name")
        term.run("query-name", f'"name": "{other.name}"')
        term.run(f"/connect {qemu.socket}", f"connected to {qemu.socket}")
        term.wait_for(lambda: toolbar(term).startswith(" connected │ QEMU "), "a socket's toolbar")
        type_and_tab(term, "block-stream device=", ["node-A"])  # the live values are the new QEMU's
    finally:
        term.close()
        destroy_domain(other)
