"""``--launch`` in scripts: QEMU stopped cleanly on every way out, the user's files kept, failures explained.

qmpsh's temporary work directories go to the test's own TMPDIR, so a test sees exactly
the directories its qmpsh made (and left behind).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, json_lines, qemu_img, qmpsh_env, require_qemu, run_qmpsh

SNAPSHOT_B = ("blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B "
              "format=qcow2\n")


def qemu_pids(workdir: Path) -> list[int]:
    """The live QEMU processes serving QMP in ``workdir`` (zombies have no command line)."""
    socket_path = str(workdir / "qmp.sock").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(socket_path in arg for arg in argv) and b"qemu" in argv[0]:
                pids.append(int(entry.name))
    return pids


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/cmdline").exists() and Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"QEMU {pid} is still running"
        time.sleep(0.05)


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A TMPDIR of the test's own for qmpsh's work directories, and the environment that sets it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return tmp, qmpsh_env(TMPDIR=str(tmp))


def only_workdir(tmp: Path) -> Path:
    (workdir,) = tmp.glob("qmpsh-*")
    return workdir


STARTED: list[subprocess.Popen[str]] = []  # by launched_script: whatever a failed test left running is ended


@pytest.fixture(autouse=True)
def _end_what_was_started(tmp_path: Path) -> Iterator[None]:
    yield
    while STARTED:
        qmpsh = STARTED.pop()
        if qmpsh.poll() is None:
            qmpsh.kill()
            qmpsh.wait(timeout=10)
    for pid in qemu_pids_anywhere(tmp_path):
        os.kill(pid, signal.SIGKILL)


def launched_script(tmp: Path, env: dict[str, str], line: str) -> tuple[subprocess.Popen[str], Path, int, str]:
    """``qmpsh --launch`` reading a script that has sent ``line`` and is still open: qmpsh, its work
    directory (in ``tmp``), the launched QEMU's pid, and the reply to ``line``."""
    require_qemu()
    qmpsh = subprocess.Popen([sys.executable, "-m", "qmpsh", "--launch"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    STARTED.append(qmpsh)
    assert qmpsh.stdin is not None and qmpsh.stdout is not None
    qmpsh.stdin.write(line)
    qmpsh.stdin.flush()
    reply = qmpsh.stdout.readline()
    workdir = only_workdir(tmp)
    (pid,) = qemu_pids(workdir)
    return qmpsh, workdir, pid, reply


def test_a_session_without_files_of_the_users_leaves_nothing_behind(tmpdir_env):
    tmp, env = tmpdir_env
    result = run_qmpsh("--launch", stdin="query-status\n", env=env)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[0]["return"]["status"] == "prelaunch"
    assert list(tmp.iterdir()) == []
    assert result.stderr == ""


def test_files_the_user_made_keep_the_work_directory_whole(tmpdir_env):
    """b.qcow2 (made by QEMU at the user's command) is the user's: the directory stays, a.qcow2 with it."""
    tmp, env = tmpdir_env
    result = run_qmpsh("--launch", stdin=SNAPSHOT_B, env=env)
    assert result.returncode == 0, result.stderr
    workdir = only_workdir(tmp)
    assert result.stderr == f"qmpsh: kept {workdir} (1 file you made: b.qcow2)\n"
    assert sorted(p.name for p in workdir.iterdir()) == ["a.qcow2", "b.qcow2", "qemu.log"]
    info = json.loads(qemu_img("info", "--output=json", "--backing-chain", "b.qcow2", cwd=workdir).stdout)
    assert [layer["filename"] for layer in info] == ["b.qcow2", "a.qcow2"]


def test_an_existing_image_in_the_users_workdir_is_used_not_replaced(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "64M", cwd=work)
    result = run_qmpsh("--launch", "--workdir", str(work), stdin="query-block\n")
    assert result.returncode == 0, result.stderr
    (block,) = json_lines(result.stdout)[0]["return"]
    assert block["inserted"]["image"]["virtual-size"] == 64 * 1024 * 1024
    assert (work / "a.qcow2").exists() and not (work / "qmp.sock").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_the_launched_qemu_with_quit(tmpdir_env, signum):
    qmpsh, workdir, pid, reply = launched_script(*tmpdir_env, SNAPSHOT_B)
    assert json.loads(reply) == {"return": {}}
    qmpsh.send_signal(signum)
    _, stderr = qmpsh.communicate(timeout=60)
    assert qmpsh.returncode == 128 + signum, stderr
    wait_gone(pid)
    log = (workdir / "qemu.log").read_text()
    assert "terminating on signal" not in log, stderr  # stopped by QMP quit, not by a signal
    assert f"kept {workdir} (1 file you made: b.qcow2)" in stderr
    assert "Traceback" not in stderr


def test_a_signal_leaves_no_directory_when_the_user_made_no_files(tmpdir_env):
    tmp, _ = tmpdir_env
    qmpsh, _, pid, _ = launched_script(*tmpdir_env, "query-status\n")
    qmpsh.send_signal(signal.SIGHUP)
    qmpsh.communicate(timeout=60)
    assert qmpsh.returncode == 128 + signal.SIGHUP
    wait_gone(pid)
    assert list(tmp.iterdir()) == []


def test_qemu_that_exits_at_start_is_explained_with_its_status_and_log(tmpdir_env):
    """README's old example on a machine without a display: QEMU's own words, not "Connection refused"."""
    tmp, env = tmpdir_env
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    result = run_qmpsh("--launch", "--", "-M", "q35", "-m", "1G", "-nodefaults", "-display", "gtk", env=env)
    assert result.returncode == 2
    first, *tail = result.stderr.splitlines()
    assert first == "qmpsh: QEMU exited with status 1; qemu.log ends:"
    assert any("gtk" in line for line in tail), result.stderr  # "gtk initialization failed", or gtk missing
    assert "Connection refused" not in result.stderr
    assert list(tmp.iterdir()) == []


def test_qemu_that_dies_while_connecting_is_explained(tmpdir_env):
    _, env = tmpdir_env
    result = run_qmpsh("--launch", "--", "-M", "none", "-display", "none", "-nodefaults",
                       "-blockdev", "driver=file,filename=missing.qcow2,node-name=x", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("qmpsh: QEMU exited with status 1; qemu.log ends:\n")
    assert "missing.qcow2" in result.stderr


def test_help_says_what_quit_does_in_each_mode(qemu):
    launched = run_qmpsh("--launch", stdin="/help\n")
    assert "/quit: leave qmpsh and stop the QEMU it launched" in launched.stderr
    assert "QEMU keeps running" not in launched.stderr
    attached = run_qmpsh(qemu.socket, stdin="/help\n")
    assert "/quit: leave qmpsh (QEMU keeps running" in attached.stderr


def test_launched_qemu_ignores_the_terminals_interrupt(tmpdir_env):
    """Ctrl-C at a terminal signals the whole foreground process group: QEMU must not be in it."""
    qmpsh, _, pid, _ = launched_script(*tmpdir_env, "query-status\n")
    assert qmpsh.stdin is not None
    assert os.getpgid(pid) != os.getpgid(qmpsh.pid) and os.getsid(pid) != os.getsid(qmpsh.pid)
    qmpsh.stdin.close()
    qmpsh.wait(timeout=60)
    wait_gone(pid)


def slow_qemu(tmp_path: Path, seconds: float) -> str:
    """A QEMU that takes ``seconds`` to start: a wrapper script for QMPSH_QEMU."""
    wrapper = tmp_path / "slow-qemu"
    wrapper.write_text(f"#!/bin/sh\nsleep {seconds}\nexec qemu-system-x86_64 \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def test_a_signal_while_qemu_starts_stops_it_too(tmpdir_env, tmp_path):
    tmp, env = tmpdir_env
    require_qemu()
    env["QMPSH_QEMU"] = slow_qemu(tmp_path, 1.5)
    qmpsh = subprocess.Popen([sys.executable, "-m", "qmpsh", "--launch"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not list(tmp.glob("qmpsh-*/qemu.log")):  # started: qmpsh waits for its socket now
            assert time.monotonic() < deadline and qmpsh.poll() is None, "qmpsh did not start QEMU"
            time.sleep(0.02)
        qmpsh.send_signal(signal.SIGTERM)
        _, stderr = qmpsh.communicate(timeout=60)
    finally:
        qmpsh.kill()
    assert qmpsh.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert list(tmp.iterdir()) == []  # the directory went, and with it the socket QEMU would have served
    assert not [pid for pid in qemu_pids_anywhere(tmp)], "QEMU outlived qmpsh"


def qemu_pids_anywhere(tmp: Path) -> list[int]:
    """QEMU processes whose command line names a path in ``tmp``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(tmp).encode() in argv and b"qemu-system" in argv:
                pids.append(int(entry.name))
    return pids


def test_a_launched_qemu_does_not_outlive_a_killed_qmpsh(tmpdir_env):
    """SIGKILL (or the OOM killer) gives qmpsh no chance to stop QEMU: QEMU ends by itself."""
    qmpsh, workdir, pid, _ = launched_script(*tmpdir_env, "query-status\n")
    qmpsh.kill()
    qmpsh.wait(timeout=10)
    wait_gone(pid, timeout=15)
    assert "terminating on signal 15" in (workdir / "qemu.log").read_text()  # QEMU's own clean stop


def test_a_hang_up_ignored_by_nohup_stays_ignored(tmpdir_env):
    _, env = tmpdir_env
    require_qemu()
    qmpsh = subprocess.Popen([sys.executable, "-m", "qmpsh", "--launch"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert qmpsh.stdin is not None and qmpsh.stdout is not None
    qmpsh.stdin.write("query-status\n")
    qmpsh.stdin.flush()
    qmpsh.stdout.readline()
    qmpsh.send_signal(signal.SIGHUP)
    stdout, stderr = qmpsh.communicate("query-name\n", timeout=60)
    assert qmpsh.returncode == 0, stderr
    assert json.loads(stdout) == {"return": {}}


@pytest.mark.parametrize("where", ["a-file", "/proc/no-such-dir"])
def test_a_work_directory_that_cannot_be_one_is_one_line(tmp_path, where):
    path = tmp_path / where if where == "a-file" else Path(where)
    if where == "a-file":
        path.write_text("not a directory")
    result = run_qmpsh("--launch", "--workdir", str(path), stdin="query-status\n")
    assert result.returncode == 2
    assert result.stderr.startswith(f"qmpsh: cannot make the work directory {path}: "), result.stderr
    assert len(result.stderr.splitlines()) == 1
    if where == "a-file":
        assert path.read_text() == "not a directory"


def test_qemu_img_that_fails_is_one_line(tmpdir_env):
    tmp, env = tmpdir_env
    env["QMPSH_QEMU_IMG"] = "false"
    result = run_qmpsh("--launch", stdin="query-status\n", env=env)
    assert result.returncode == 2
    assert "qmpsh: false could not create" in result.stderr and len(result.stderr.splitlines()) == 1
    assert list(tmp.iterdir()) == []


def killed(tmp: Path, env: dict[str, str], line: str) -> Path:
    """The work directory of a ``qmpsh --launch`` that was sent ``line`` and then SIGKILLed, once QEMU is gone."""
    qmpsh, workdir, pid, _ = launched_script(tmp, env, line)
    qmpsh.kill()
    qmpsh.wait(timeout=10)
    wait_gone(pid, timeout=15)
    assert workdir.exists()  # no one was there to remove it
    return workdir


def test_the_next_launch_removes_what_a_killed_qmpsh_left(tmpdir_env):
    tmp, env = tmpdir_env
    killed(tmp, env, "query-status\n")
    result = run_qmpsh("--launch", stdin="query-status\n", env=env)
    assert result.returncode == 0, result.stderr
    assert list(tmp.iterdir()) == []


def test_the_next_launch_keeps_a_killed_qmpshs_directory_with_the_users_files(tmpdir_env):
    tmp, env = tmpdir_env
    workdir = killed(tmp, env, SNAPSHOT_B)
    before = sorted(path.name for path in workdir.iterdir())
    result = run_qmpsh("--launch", stdin="query-status\n", env=env)
    assert result.returncode == 0, result.stderr
    assert list(tmp.iterdir()) == [workdir]
    assert sorted(path.name for path in workdir.iterdir()) == before


def test_the_next_launch_leaves_a_running_sessions_directory_alone(tmpdir_env):
    tmp, env = tmpdir_env
    running, workdir, _, _ = launched_script(tmp, env, "query-status\n")
    result = run_qmpsh("--launch", stdin="query-status\n", env=env)
    assert result.returncode == 0, result.stderr
    assert list(tmp.iterdir()) == [workdir]
    stdout, stderr = running.communicate("query-name\n", timeout=60)
    assert running.returncode == 0, stderr
    assert json.loads(stdout) == {"return": {}}
    assert list(tmp.iterdir()) == []


def test_the_next_launch_leaves_a_directory_whose_qemu_outlived_qmpsh_alone(tmpdir_env):
    """QEMU holds the mark's lock too: while it runs (stopping slowly, say) its files are in use."""
    tmp, env = tmpdir_env
    qmpsh, workdir, pid, _ = launched_script(tmp, env, "query-status\n")
    os.kill(pid, signal.SIGSTOP)  # QEMU cannot act on the SIGTERM qmpsh's death sends it
    try:
        qmpsh.kill()
        qmpsh.wait(timeout=10)
        result = run_qmpsh("--launch", stdin="query-status\n", env=env)
        assert result.returncode == 0, result.stderr
        assert list(tmp.iterdir()) == [workdir] and (workdir / "a.qcow2").exists()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_gone(pid, timeout=15)
    run_qmpsh("--launch", stdin="query-status\n", env=env)
    assert list(tmp.iterdir()) == []
