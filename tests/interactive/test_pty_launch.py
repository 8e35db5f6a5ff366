"""``qmpsh --launch`` at a real terminal: the operator's VM and files survive Ctrl-C, a closed
terminal and leaving with a job running; a QEMU that died is reported as such.

Each test gives qmpsh a TMPDIR of its own, so it sees exactly the work directories qmpsh made.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import qemu_img, qemu_io, qmpsh_env
from tests.integration.test_launch import qemu_pids, wait_gone
from tests.interactive.ptyterm import CTRL_C, CTRL_D, ENTER, PROMPT, Terminal
from tests.monitor import qmp

BACKUP = "drive-backup device=node-A target=backup.qcow2 sync=full format=qcow2 speed=1M job-id=job0"


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    where = tmp_path / "tmp"
    where.mkdir()
    return where


def launch(tmp: Path, *args: str, cpr: bool = False) -> tuple[Terminal, Path]:
    """qmpsh --launch at a terminal; the work directory it names when it starts."""
    term = Terminal(None, "--launch", *args, env=qmpsh_env(TERM="xterm", TMPDIR=str(tmp)), cpr=cpr)
    term.wait_prompt()
    found = re.search(r"QEMU was launched in (\S+);", term.plain())
    assert found, term.plain()
    return term, Path(found.group(1))


def workdir_with_data(tmp_path: Path) -> Path:
    """A --workdir whose a.qcow2 holds 32M of data, so a backup at 1M/s runs for half a minute."""
    work = tmp_path / "work"
    work.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "39M", cwd=work)
    qemu_io(work / "a.qcow2", "write -P 0x11 0 32M")
    return work


def test_ctrl_c_interrupts_wait_and_never_reaches_qemu(tmp):
    term, workdir = launch(tmp)
    try:
        assert "and the directory goes unless you made files there" in term.plain()
        term.send("/wait DEVICE_DELETED timeout=60" + ENTER)
        term.pump(0.5)
        term.send(CTRL_C)
        term.wait_text("interrupted")
        term.run("query-status", '"prelaunch"')  # the VM is still there
        assert "terminating on signal" not in (workdir / "qemu.log").read_text()
        (pid,) = qemu_pids(workdir)
        term.send(CTRL_D)
        assert term.wait_exit() == 0
        wait_gone(pid)
        assert list(tmp.iterdir()) == []  # nothing of the user's: nothing left behind
    finally:
        term.close()


def test_closing_the_terminal_stops_qemu_cleanly_and_keeps_the_users_files(tmp):
    term, workdir = launch(tmp)
    term.run("blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B "
             "format=qcow2", '{"return": {}}')
    (pid,) = qemu_pids(workdir)
    assert term.hang_up() == 128 + signal.SIGHUP
    wait_gone(pid)
    assert "terminating on signal" not in (workdir / "qemu.log").read_text()  # QMP quit, not a signal
    assert sorted(p.name for p in workdir.iterdir()) == ["a.qcow2", "b.qcow2", "qemu.log"]
    info = json.loads(qemu_img("info", "--output=json", "--backing-chain", "b.qcow2", cwd=workdir).stdout)
    assert [layer["filename"] for layer in info] == ["b.qcow2", "a.qcow2"]


def test_closing_the_terminal_leaves_no_stray_directory(tmp):
    term, workdir = launch(tmp)
    (pid,) = qemu_pids(workdir)
    assert term.hang_up() == 128 + signal.SIGHUP
    wait_gone(pid)
    assert list(tmp.iterdir()) == []


def test_leaving_a_launched_qemu_with_a_job_running_asks_first(tmp_path):
    work = workdir_with_data(tmp_path)
    term = Terminal(None, "--launch", "--workdir", str(work))
    try:
        term.wait_prompt()
        assert "leaving stops it and keeps the directory" in term.plain()
        term.run(BACKUP, '{"return": {}}')
        term.send(CTRL_D)
        term.wait_text("Leaving stops the QEMU qmpsh launched, and with it job0 (backup running")
        term.send("n" + ENTER)
        term.run("query-jobs", '"status": "running"')  # stayed: QEMU and its job go on
        term.send("/quit" + ENTER)
        term.wait_for(lambda: term.plain().count("Leave? [y/N]") == 2, "the question again, after /quit")
        term.send("y" + ENTER)
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert not (work / "qmp.sock").exists() and (work / "backup.qcow2").exists()


def test_leaving_qemu_that_qmpsh_did_not_start_says_its_jobs_go_on(qemu_factory, tmp_path):
    work = workdir_with_data(tmp_path)
    vm = qemu_factory(workdir=work)
    term = Terminal(vm.socket)
    try:
        term.wait_prompt()
        term.run(BACKUP, '{"return": {}}')
        term.send(CTRL_D)
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert "QEMU keeps running, and so do its jobs: job0 (backup running" in term.plain()
    assert "Leave?" not in term.plain()
    (job,) = qmp(vm.socket, "query-jobs")["return"]
    assert job["id"] == "job0" and job["status"] == "running"


def test_a_launched_qemu_that_died_is_reported_and_not_reconnected_to(tmp_path):
    work = workdir_with_data(tmp_path)
    term = Terminal(None, "--launch", "--workdir", str(work), cpr=True)
    try:
        term.wait_prompt()
        term.run(BACKUP, '{"return": {}}')
        term.wait_for(lambda: "job0 backup running" in term.rows[-1], "the job in the toolbar")
        assert "VM prelaunch" in term.rows[-1]
        (pid,) = qemu_pids(work)
        os.kill(pid, signal.SIGKILL)
        term.wait_text("connection to QEMU lost: the QEMU qmpsh launched was killed by signal 9 (SIGKILL)")
        term.wait_for(lambda: term.rows[-1] == " disconnected", "the toolbar to drop the VM state and the job")
        assert "/reconnect to try again" not in term.plain()
        term.run("/reconnect", "/reconnect: the QEMU qmpsh launched was killed by signal 9 (SIGKILL)")
        assert "No such file or directory" not in term.plain()
        term.send(CTRL_D)
        assert term.wait_exit() == 3
    finally:
        term.close()


def test_prompt_is_plain_after_the_question(tmp_path):
    """Answering the question (Ctrl-C counts as no) gives the prompt back, usable."""
    work = workdir_with_data(tmp_path)
    term = Terminal(None, "--launch", "--workdir", str(work))
    try:
        term.wait_prompt()
        term.run(BACKUP, '{"return": {}}')
        term.send("/quit" + ENTER)
        term.wait_text("Leave? [y/N]")
        term.send(CTRL_C)
        term.wait_prompt()
        assert term.cursor_row == PROMPT.rstrip()
        term.run("query-status", '"prelaunch"')
    finally:
        term.close()


def test_ctrl_c_while_checking_jobs_on_leaving_stays(tmp_path):
    """Ctrl-C outside a command (here: while leaving asks QEMU for its jobs) never ends the session."""
    work = workdir_with_data(tmp_path)
    term = Terminal(None, "--launch", "--workdir", str(work))
    try:
        term.wait_prompt()
        term.run(BACKUP, '{"return": {}}')
        pid = qemu_pids(work)[0]
        os.kill(pid, signal.SIGSTOP)  # QEMU cannot answer query-jobs now
        try:
            term.send(CTRL_D)
            term.pump(0.5)
            term.send(CTRL_C)  # the terminal, not in raw mode now, echoes ^C before the next prompt
            term.wait_for(lambda: term.cursor_row.endswith(PROMPT.rstrip()), "the prompt back after Ctrl-C")
        finally:
            os.kill(pid, signal.SIGCONT)
        term.send("query-status" + ENTER)
        term.wait_text('"prelaunch"')  # still here, and so is QEMU
        assert qemu_pids(work) == [pid]
    finally:
        term.close()
