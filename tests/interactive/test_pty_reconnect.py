"""Losing QEMU at the prompt and getting it back: /reconnect and --reconnect."""

from __future__ import annotations

from tests.interactive.ptyterm import CTRL_D


def test_reconnect_after_qemu_restarts(qemu_factory, terminal):
    vm = qemu_factory()
    term = terminal(vm.socket)
    term.run("query-name", '{"return": {}}')
    vm.kill()
    term.wait_text("connection to QEMU lost")
    term.run("/reconnect", "/reconnect: Connection refused")  # QEMU is not back yet (its socket file is)
    qemu_factory(workdir=vm.dir)  # the same socket path, a new QEMU
    term.run("/reconnect", "connected to ")
    term.run("query-status", '"prelaunch"')
    term.send("query-stat\t")
    term.wait_text("query-status")  # completion works again (commands fetched anew)
    term.send("\x15" + CTRL_D)  # clear the line, leave
    assert term.wait_exit() == 0, term.dump()


def test_automatic_reconnect(qemu_factory, terminal):
    vm = qemu_factory()
    term = terminal(vm.socket, "--reconnect")
    term.wait_prompt()
    vm.kill()
    term.wait_text("connection to QEMU lost")
    assert "/reconnect to try again" not in term.plain()
    qemu_factory(workdir=vm.dir)
    term.wait_text("reconnected after", timeout=20)
    term.run("query-status", '"prelaunch"')
    term.send(CTRL_D)
    assert term.wait_exit() == 0, term.dump()
