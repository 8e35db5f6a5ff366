"""A throwaway OpenSSH server on a loopback port, for libvirt's ``qemu+ssh://`` transport.

``start_sshd`` makes a client key pair and a host key in a temporary directory, writes a private
sshd_config (127.0.0.1 only, root by key only, no PAM) and runs ``/usr/sbin/sshd -D`` as a child;
``stop_sshd`` stops that child by its pid. Debian's ``openssh-server`` (``bash .ci/setup test``
installs it, and keeps the system's ssh service from starting) provides sshd.

libvirt runs the ``ssh`` found on PATH, with ``-i KEYFILE`` from the URI, and on the remote end
``virt-ssh-helper`` (libvirt-daemon). Its ssh transport has no known_hosts parameter (only libssh
and libssh2 have one): ``ssh_env`` puts first on PATH an ``ssh`` that checks the host key against
the directory's own known_hosts and never prompts, so root's ~/.ssh is neither read nor written.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, qmpsh_env

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; Debian's service makes it

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
"""

SSH_WRAPPER = """\
#!/bin/sh
exec {ssh} -o BatchMode=yes -o UserKnownHostsFile={dir}/known_hosts -o GlobalKnownHostsFile=/dev/null "$@"
"""


@dataclass
class Sshd:
    """A running test sshd: ``key`` logs in as root at 127.0.0.1:``port``; ``stranger`` is not authorized."""

    dir: Path
    port: int
    key: Path
    stranger: Path
    log: Path
    process: subprocess.Popen[bytes]
    seconds: float  # keys, config and start, until the port greets

    def uri(self, key: Path | None = None, port: int | None = None) -> str:
        return f"qemu+ssh://root@127.0.0.1:{port or self.port}/system?keyfile={key or self.key}"

    def env(self) -> dict[str, str]:
        """qmpsh's environment: the checking ``ssh`` first on PATH, no agent's keys."""
        env = qmpsh_env(PATH=f"{self.dir / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
        env.pop("SSH_AUTH_SOCK", None)
        return env


def _keygen(path: Path) -> None:
    subprocess.run([_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "qmpsh-test", "-f", str(path)],
                   check=True, timeout=60)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run 'bash .ci/setup test' (installs Debian's openssh-client)")
    return found


def _greets(port: int) -> bool:
    """sshd accepts on ``port`` and sends its banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            return probe.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def start_sshd() -> Sshd:
    if not SSHD.exists():
        pytest.fail(f"{SSHD} is missing: run 'bash .ci/setup test' (installs Debian's openssh-server)")
    begin = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="qmpsh-test-sshd-"))
    key, stranger, host_key = workdir / "client_key", workdir / "stranger_key", workdir / "host_key"
    for path in (key, stranger, host_key):
        _keygen(path)
    (workdir / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    port = free_port()
    host_type, host_blob = Path(f"{host_key}.pub").read_text().split()[:2]
    (workdir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_type} {host_blob}\n")
    (workdir / "bin").mkdir()
    wrapper = workdir / "bin/ssh"
    wrapper.write_text(SSH_WRAPPER.format(ssh=_tool("ssh"), dir=workdir))
    wrapper.chmod(0o755)
    config = workdir / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, dir=workdir))
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log = workdir / "sshd.log"
    checked = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"sshd -t rejects the test config: {checked.stderr.strip()}")
    process = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL)
    sshd = Sshd(workdir, port, key, stranger, log, process, 0.0)
    deadline = time.monotonic() + 30
    while not _greets(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_sshd(sshd)
            pytest.fail(f"the test sshd did not come up on 127.0.0.1:{port}: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)
    sshd.seconds = time.monotonic() - begin
    return sshd


def stop_sshd(sshd: Sshd) -> None:
    """Stop the listening sshd (its child, by pid); sessions end with their clients."""
    if sshd.process.poll() is None:
        sshd.process.terminate()
        try:
            sshd.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sshd.process.kill()
            sshd.process.wait()
    shutil.rmtree(sshd.dir, ignore_errors=True)
