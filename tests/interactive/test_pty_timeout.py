"""``--timeout`` at a terminal: idling at the prompt longer than the timeout costs the next command nothing."""

from __future__ import annotations

import time

from tests.interactive.ptyterm import Terminal


def test_idling_longer_than_the_timeout_then_a_command_gets_its_reply(qemu, terminal):
    term: Terminal = terminal(qemu.socket, "--timeout", "1")
    term.run("query-status", '"prelaunch"')
    time.sleep(2)
    term.run("query-name", '{"return": {}}')
    term.pump(0.3)
    assert "no reply to" not in term.plain() and "late reply" not in term.plain(), term.dump()
