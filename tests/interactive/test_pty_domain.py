"""``qmpsh --domain`` at a real terminal: the domain's events come in above the prompt."""

from __future__ import annotations

from tests.interactive.ptyterm import ENTER, PROMPT, parse_row
from tests.libvirt_fixtures import Domain, virsh


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
