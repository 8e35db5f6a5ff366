"""``--launch``: start QEMU with a private QMP socket and stop it on exit.

With no QEMU arguments, QEMU is started the way the live block operations
document starts it (q35, TCG, ``-S``, a fresh 39M ``a.qcow2`` as ``node-A`` on
``virtio0``) in a work directory, so every example there can be pasted as is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

QEMU = os.environ.get("QMPSH_QEMU", "qemu-system-x86_64")
QEMU_IMG = os.environ.get("QMPSH_QEMU_IMG", "qemu-img")
INSTALL_HINT = "install QEMU first, e.g. on Debian: apt-get install qemu-system-x86 qemu-utils"


class LaunchError(Exception):
    pass


def seed_arguments() -> list[str]:
    """The live block operations document's QEMU, run under TCG and stopped (-S)."""
    return [
        "-display", "none", "-no-user-config", "-M", "q35", "-accel", "tcg", "-nodefaults", "-m", "512", "-S",
        "-blockdev",
        "node-name=node-A,driver=qcow2,file.driver=file,file.node-name=file,file.filename=a.qcow2",
        "-device", "virtio-blk,drive=node-A,id=virtio0",
    ]


class LaunchedQemu:
    """A QEMU process serving QMP on a unix socket in ``workdir``."""

    def __init__(self, qemu_args: list[str], workdir: str | None = None) -> None:
        self.keep = workdir is not None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="qmpsh-"))
        self.socket = str(self.workdir / "qmp.sock")
        self.qemu_args = qemu_args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Start QEMU and return its QMP socket path once it listens."""
        if shutil.which(QEMU) is None:
            raise LaunchError(f"{QEMU} not found: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = self.qemu_args
        if not args:
            if shutil.which(QEMU_IMG) is None:
                raise LaunchError(f"{QEMU_IMG} not found: {INSTALL_HINT}")
            image = self.workdir / "a.qcow2"
            image.unlink(missing_ok=True)
            subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(image), "39M"], check=True)
            args = seed_arguments()
        log = open(self.workdir / "qemu.log", "wb")
        self.process = subprocess.Popen(
            [QEMU, *args, "-qmp", f"unix:{self.socket},server=on,wait=off"],
            cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = (self.workdir / "qemu.log").read_text(errors="replace").strip()
                self.stop()
                raise LaunchError(f"QEMU did not start: {output.splitlines()[-1] if output else 'no output'}")
            time.sleep(0.02)
        return self.socket

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
