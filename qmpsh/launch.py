"""``--launch``: start QEMU with a private QMP socket and stop it on exit.

With no QEMU arguments, QEMU is started the way the live block operations
document starts it (q35, TCG, ``-S``, a fresh 39M ``a.qcow2`` as ``node-A`` on
``virtio0``) in a work directory, so every example there can be pasted as is.

QEMU runs in a session of its own: the terminal's Ctrl-C and hang-up never
reach it, only qmpsh stops it (QMP ``quit``, then SIGTERM, then SIGKILL). On
exit the work directory goes only if it holds nothing but qmpsh's own files.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

QEMU = os.environ.get("QMPSH_QEMU", "qemu-system-x86_64")
QEMU_IMG = os.environ.get("QMPSH_QEMU_IMG", "qemu-img")
INSTALL_HINT = "install QEMU first, e.g. on Debian: apt-get install qemu-system-x86 qemu-utils"
IMAGE = "a.qcow2"
LOG = "qemu.log"
SOCKET = "qmp.sock"
QUIT_GRACE = 10.0  # seconds QEMU has to stop after QMP quit (or SIGTERM) before the next step
LOG_TAIL_LINES = 3
GREETING_WAIT = 1.0  # seconds
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class LaunchError(Exception):
    pass


def seed_arguments() -> list[str]:
    """The live block operations document's QEMU, run under TCG and stopped (-S)."""
    return [
        "-display", "none", "-no-user-config", "-M", "q35", "-accel", "tcg", "-nodefaults", "-m", "512", "-S",
        "-blockdev",
        f"node-name=node-A,driver=qcow2,file.driver=file,file.node-name=file,file.filename={IMAGE}",
        "-device", "virtio-blk,drive=node-A,id=virtio0",
    ]


def describe_status(returncode: int) -> str:
    """``exited with status 1`` or ``was killed by signal 9 (SIGKILL)``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return f"was killed by signal {-returncode}{name}"


def _ending_with_qmpsh() -> Callable[[], None]:
    """What QEMU's process runs before QEMU: ask Linux for SIGTERM when qmpsh dies, however it dies
    (SIGKILL, the OOM killer), so that a QEMU in a session of its own never outlives it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # found before the fork: the child only calls it

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return die_with_parent


class LaunchedQemu:
    """A QEMU process serving QMP on a unix socket in ``workdir``."""

    def __init__(self, qemu_args: list[str], workdir: str | None = None) -> None:
        self.given_workdir = workdir is not None  # the user's directory: nothing in it is ever deleted
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="qmpsh-"))
        self.socket = str(self.workdir / SOCKET)
        self.qemu_args = qemu_args
        self.process: subprocess.Popen[bytes] | None = None
        self.own_files = {LOG, SOCKET}  # what qmpsh made in workdir; anything else is the user's

    def start(self, timeout: float = 30.0) -> str:
        """Start QEMU and return its QMP socket path once it accepts connections."""
        if shutil.which(QEMU) is None:
            raise LaunchError(f"{QEMU} not found: {INSTALL_HINT}")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LaunchError(f"cannot make the work directory {self.workdir}: {err.strerror}") from None
        args = self.qemu_args or self._seed_setup()
        with open(self.workdir / LOG, "wb") as log:
            self.process = subprocess.Popen(
                [QEMU, *args, "-qmp", f"unix:{self.socket},server=on,wait=off"],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # the terminal's signals (Ctrl-C, hang-up) are for qmpsh, not QEMU
                preexec_fn=_ending_with_qmpsh(),
            )
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self.process.poll() is not None:
                raise LaunchError(f"QEMU {self.exit_report()}")
            if time.monotonic() > deadline:
                raise LaunchError(f"QEMU did not open its QMP socket in {timeout:g} s{self._log_tail()}")
            time.sleep(0.02)
        return self.socket

    def _seed_setup(self) -> list[str]:
        """The document's a.qcow2 (made fresh, or the one already in the user's --workdir)."""
        image = self.workdir / IMAGE
        if self.given_workdir and image.exists():
            return seed_arguments()
        if shutil.which(QEMU_IMG) is None:
            raise LaunchError(f"{QEMU_IMG} not found: {INSTALL_HINT}")
        self.own_files.add(IMAGE)  # before it exists: a half-made one is ours too
        made = subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(image), "39M"], capture_output=True,
                              text=True)
        if made.returncode != 0:
            raise LaunchError(f"{QEMU_IMG} could not create {image}: {made.stderr.strip() or made.returncode}")
        return seed_arguments()

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(self.socket)
            except OSError:
                return False
        return True

    def exited(self, wait: float = 0.0) -> bool:
        """Whether QEMU has exited, waiting up to ``wait`` seconds for it to do so."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return False
        return True

    async def ended(self, within: float) -> str | None:
        """How QEMU ended (``exit_report``) if it exits ``within`` seconds; None while it runs."""
        deadline = time.monotonic() + within
        while not self.exited():
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)
        return self.exit_report()

    def exit_report(self) -> str:
        """How QEMU ended, with the last lines of its log: ``exited with status 1; qemu.log ends: ...``."""
        assert self.process is not None and self.process.returncode is not None
        return f"{describe_status(self.process.returncode)}{self._log_tail()}"

    def _log_tail(self) -> str:
        try:
            lines = (self.workdir / LOG).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        if not lines:
            return f" ({LOG} is empty)"
        return f"; {LOG} ends:\n" + "\n".join(f"  {line}" for line in lines[-LOG_TAIL_LINES:])

    def stop(self, grace: float = QUIT_GRACE) -> None:
        """Stop QEMU cleanly: QMP ``quit``, then SIGTERM, then SIGKILL, each after ``grace`` seconds."""
        if self.process is None or self.exited():
            return
        if not (self._send_quit(grace) and self.exited(grace)):
            self.process.terminate()
            if not self.exited(grace):
                self.process.kill()
                self.process.wait()

    def _send_quit(self, timeout: float) -> bool:
        """Say ``quit`` on a connection of our own (the session's is closed by now); False if that failed.

        A connection made while QEMU is still closing the session's may never be greeted:
        one that is not greeted within a second is dropped for a new one.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX) as conn:
                try:
                    conn.settimeout(GREETING_WAIT)
                    conn.connect(self.socket)
                    replies = conn.makefile("rb")
                    replies.readline()  # the greeting
                    conn.sendall(b'{"execute": "qmp_capabilities"}\n')
                    if "return" not in json.loads(replies.readline()):
                        return False
                    conn.sendall(b'{"execute": "quit"}\n')
                except TimeoutError:
                    continue
                except (OSError, ValueError):
                    return False
                try:  # hanging up now could drop the command unread: wait for QEMU to hang up as it stops
                    conn.settimeout(max(deadline - time.monotonic(), 0.1))
                    while replies.readline():
                        pass
                except OSError:
                    pass  # a reset is a hang-up too
                return True
        return False

    def clean_up(self) -> str | None:
        """Remove the work directory unless it is the user's or holds files the user made; say what was kept."""
        try:
            (self.workdir / SOCKET).unlink(missing_ok=True)
            if self.given_workdir:
                return None
            yours = sorted(path.name for path in self.workdir.iterdir() if path.name not in self.own_files)
        except OSError:  # not a directory, or not ours to read: nothing of it is removed
            return None
        if not yours:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return None
        shown = ", ".join(yours[:5]) + (", ..." if len(yours) > 5 else "")
        return f"kept {self.workdir} ({len(yours)} file{'s' if len(yours) != 1 else ''} you made: {shown})"
