"""``--launch``: start QEMU with a private QMP socket and stop it on exit.

With no QEMU arguments, QEMU is started the way the live block operations
document starts it (q35, TCG, ``-S``, a fresh 39M ``a.qcow2`` as ``node-A`` on
``virtio0``) in a work directory, so every example there can be pasted as is.

QEMU runs in a session of its own: the terminal's Ctrl-C and hang-up never
reach it, only qmpsh stops it (QMP ``quit``, then SIGTERM, then SIGKILL). On
exit the work directory goes only if it holds nothing but qmpsh's own files.
A temporary one left by a qmpsh that was killed (SIGKILL, the OOM killer) goes,
by the same rule, when the next ``--launch`` starts: its mark, locked by qmpsh
and by QEMU for as long as either runs, says whose files are in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
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
MARK = ".qmpsh-workdir"  # in a temporary work directory: qmpsh's own files by name, locked while in use
PREFIX = "qmpsh-"
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
        if workdir is None:
            remove_orphaned_workdirs()
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=PREFIX))
        self.socket = str(self.workdir / SOCKET)
        self.qemu_args = qemu_args
        self.process: subprocess.Popen[bytes] | None = None
        self.own_files = {LOG, SOCKET}  # what qmpsh made in workdir; anything else is the user's
        self._mark: int | None = None  # the temporary work directory's mark, locked (QEMU inherits it)

    def start(self, timeout: float = 30.0) -> str:
        """Start QEMU and return its QMP socket path once it accepts connections."""
        if shutil.which(QEMU) is None:
            raise LaunchError(f"{QEMU} not found: {INSTALL_HINT}")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LaunchError(f"cannot make the work directory {self.workdir}: {err.strerror}") from None
        args = self.qemu_args or self._seed_setup()
        if not self.given_workdir:
            self.own_files.add(MARK)
            self._mark = _lock_mark(self.workdir / MARK, self.own_files)
        with open(self.workdir / LOG, "wb") as log:
            self.process = subprocess.Popen(
                [QEMU, *args, "-qmp", f"unix:{self.socket},server=on,wait=off"],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # the terminal's signals (Ctrl-C, hang-up) are for qmpsh, not QEMU
                preexec_fn=_ending_with_qmpsh(),
                pass_fds=() if self._mark is None else (self._mark,),  # the lock lasts while QEMU runs too
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
            return self._clean_up()
        finally:
            if self._mark is not None:  # QEMU has exited: the directory is no one's now
                os.close(self._mark)
                self._mark = None

    def _clean_up(self) -> str | None:
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
        with contextlib.suppress(OSError):  # kept, it is the user's: no mark of qmpsh's in it
            (self.workdir / MARK).unlink(missing_ok=True)
        shown = ", ".join(yours[:5]) + (", ..." if len(yours) > 5 else "")
        return f"kept {self.workdir} ({len(yours)} file{'s' if len(yours) != 1 else ''} you made: {shown})"


def _lock_mark(mark: Path, own_files: set[str]) -> int:
    """Make the work directory's ``mark``, lock it and name qmpsh's own files in it; the locked descriptor.

    The names are written once the lock is held: a mark without its own name is one being made.
    """
    fd = os.open(mark, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, "".join(f"{name}\n" for name in sorted(own_files)).encode())
    return fd


def remove_orphaned_workdirs() -> None:
    """Remove the temporary work directories that killed qmpsh runs left, by the rule of ``clean_up``.

    Only a directory of this user's with a mark no one holds (its qmpsh and its QEMU have both
    exited) and nothing in it but the files its mark names; those are removed by name, then the
    directory if it is empty. Anything unexpected leaves the directory as it is.
    """
    base = tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(base) if name.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        _remove_if_orphaned(Path(base, name))


def _remove_if_orphaned(workdir: Path) -> None:
    """Remove ``workdir`` if it is an orphan, through descriptors: a symbolic link leads nowhere."""
    with contextlib.ExitStack() as opened:
        try:
            folder = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            opened.callback(os.close, folder)
            mark = os.open(MARK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
            opened.callback(os.close, mark)
            if not os.fstat(folder).st_uid == os.fstat(mark).st_uid == os.getuid():
                return
            fcntl.flock(mark, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its qmpsh or its QEMU still runs
            own = set(os.read(mark, 1 << 16).decode().split())
            present = set(os.listdir(folder))
            if MARK not in own or not present <= own:  # a mark being made, or files of the user's: kept whole
                return
            for name in present:
                os.unlink(name, dir_fd=folder)
            os.rmdir(workdir)
        except (OSError, UnicodeDecodeError):  # no mark (an older qmpsh's, one being made), not ours, ...
            return
