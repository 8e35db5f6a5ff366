"""Shared fixtures: real QEMU (and qemu-storage-daemon) processes with QMP sockets, and running qmpsh.

QEMU is required: a missing qemu-system-x86_64, qemu-img or qemu-storage-daemon
fails the tests that need it (``bash .ci/setup`` installs them), it never skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings

from tests.monitor import qmp

# libvirt's daemons and the one shared domain, for the integration and the pty tests alike
pytest_plugins = ["tests.libvirt_fixtures"]

# Property tests explore new inputs on every developer run; CI (CI=true) replays a fixed
# sequence so that a run is reproducible, and nobody's slow machine trips a deadline.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

QEMU = os.environ.get("QMPSH_QEMU", "qemu-system-x86_64")
QEMU_IMG = os.environ.get("QMPSH_QEMU_IMG", "qemu-img")
STORAGE_DAEMON = os.environ.get("QMPSH_QEMU_STORAGE_DAEMON", "qemu-storage-daemon")
QEMU_IO = os.environ.get("QMPSH_QEMU_IO", "qemu-io")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _private_xdg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the real home: XDG directories point at a temp dir."""
    base = tmp_path_factory.mktemp("xdg")
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(base / name.lower()))
    monkeypatch.delenv("QMP_SOCKET", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def write_config(text: str) -> Path:
    """Write qmpsh's config file in the test's private XDG_CONFIG_HOME."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "qmpsh" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def history_path() -> Path:
    """qmpsh's history file in the test's private XDG_STATE_HOME."""
    return Path(os.environ["XDG_STATE_HOME"]) / "qmpsh" / "history"


def require_qemu() -> None:
    _require((QEMU, "qemu-system-x86"), (QEMU_IMG, "qemu-utils"))


def require_storage_daemon() -> None:
    _require((STORAGE_DAEMON, "qemu-system-common"), (QEMU_IMG, "qemu-utils"))


def _require(*tools: tuple[str, str]) -> None:
    for tool, package in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run 'bash .ci/setup test' (installs Debian's {package})")


def qemu_img(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QEMU_IMG, *args], cwd=cwd, capture_output=True, text=True, check=True)


def qemu_io(image: Path, *commands: str, fmt: str = "qcow2") -> None:
    """Run qemu-io ``commands`` (``write -P 0x11 0 4M`` ...) on an image no QEMU has open."""
    argv = [QEMU_IO, "-f", fmt]
    for command in commands:
        argv += ["-c", command]
    subprocess.run([*argv, str(image)], check=True, capture_output=True)


def json_lines(stdout: str, context: str = "") -> list:
    """Every line of scripted qmpsh's stdout as JSON; a line that is not JSON fails the test."""
    docs = []
    for line in stdout.splitlines():
        try:
            docs.append(json.loads(line))
        except ValueError:
            pytest.fail(f"stdout line is not JSON: {line!r}\n{context}")
    return docs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Qemu:
    """A running QEMU (TCG, -S), or qemu-storage-daemon, serving QMP on ``socket``; images live in ``dir``."""

    dir: Path
    socket: str
    process: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def seed_args(image: str = "a.qcow2", node: str = "node-A") -> list[str]:
    """QEMU as the live block operations document starts it, with TCG and -S."""
    return [
        "-display", "none", "-no-user-config", "-M", "q35", "-accel", "tcg", "-nodefaults", "-m", "512", "-S",
        "-blockdev",
        f"node-name={node},driver=qcow2,file.driver=file,file.node-name=file,file.filename={image}",
        "-device", f"virtio-blk,drive={node},id=virtio0",
    ]


def start_qemu(workdir: Path, args: list[str], name: str = "qmp.sock", extra_qmp: list[str] = ()) -> Qemu:
    """Start QEMU in ``workdir`` with a QMP unix socket; wait until it accepts."""
    require_qemu()
    sock = str(workdir / name)
    qmp = ["-qmp", f"unix:{sock},server=on,wait=off"]
    for extra in extra_qmp:
        qmp += ["-qmp", f"unix:{workdir / extra},server=on,wait=off"]
    return _serving(QEMU, args, qmp, workdir, name)


def start_storage_daemon(workdir: Path, args: list[str], name: str = "qsd.sock") -> Qemu:
    """Start qemu-storage-daemon in ``workdir`` with ``args`` and a QMP monitor on a unix socket."""
    require_storage_daemon()
    sock = str(workdir / name)
    qmp = ["--chardev", f"socket,id=qmp0,path={sock},server=on,wait=off", "--monitor", "chardev=qmp0"]
    return _serving(STORAGE_DAEMON, args, qmp, workdir, name)


def _serving(program: str, args: list[str], qmp: list[str], workdir: Path, name: str) -> Qemu:
    """Run ``program`` in ``workdir``, its output to NAME.log; return once its QMP socket NAME accepts."""
    sock = str(workdir / name)
    argv = [program, *args, *qmp]
    with open(workdir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {(workdir / f'{name}.log').read_text()}")
        if os.path.exists(sock):
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(sock)
                    break
                except OSError:
                    pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{argv[0]} did not open its QMP socket in 30 s")
        time.sleep(0.02)
    return Qemu(workdir, sock, proc, args)


@pytest.fixture
def qemu_factory(tmp_path: Path) -> Iterator:
    """Start QEMUs on demand: ``qemu_factory(args, name=..., workdir=...)``; all stopped at the end."""
    started: list[Qemu] = []

    def factory(args: list[str] | None = None, *, name: str = "qmp.sock", workdir: Path | None = None,
                extra_qmp: list[str] = ()) -> Qemu:
        where = workdir or tmp_path
        if args is None:
            if not (where / "a.qcow2").exists():
                require_qemu()
                qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "39M", cwd=where)
            args = seed_args()
        vm = start_qemu(where, args, name, extra_qmp)
        started.append(vm)
        return vm

    yield factory
    for vm in started:
        vm.stop()


@pytest.fixture
def qemu(qemu_factory) -> Qemu:
    """The live block operations document's QEMU: a fresh 39M a.qcow2 as node-A on virtio0."""
    return qemu_factory()


@pytest.fixture(scope="session")
def qemu_schema(tmp_path_factory: pytest.TempPathFactory) -> list:
    """QEMU's own query-qmp-schema (taken once per test run from a real QEMU)."""
    vm = start_qemu(tmp_path_factory.mktemp("schema"), ["-display", "none", "-no-user-config", "-nodefaults",
                                                        "-M", "none", "-S"])
    try:
        entries = qmp(vm.socket, "query-qmp-schema")["return"]
    finally:
        vm.stop()
    assert isinstance(entries, list) and len(entries) > 100
    return entries


@pytest.fixture
def storage_daemon(tmp_path: Path) -> Iterator[Qemu]:
    """qemu-storage-daemon with the document's node-A (a fresh 39M a.qcow2) and no devices, no VM."""
    require_storage_daemon()
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "39M", cwd=tmp_path)
    daemon = start_storage_daemon(tmp_path, [
        "--blockdev", "driver=file,node-name=file,filename=a.qcow2",
        "--blockdev", "driver=qcow2,node-name=node-A,file=file",
    ])
    yield daemon
    daemon.stop()


def qmpsh_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QMP_SOCKET", None)
    env.update(extra)
    return env


def run_qmpsh(*args: str, stdin: str = "", timeout: float = 120, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m qmpsh ARGS`` in scripted mode with ``stdin`` as its input."""
    return subprocess.run(
        [sys.executable, "-m", "qmpsh", *args], input=stdin, capture_output=True, text=True,
        timeout=timeout, env=env or qmpsh_env(), cwd=cwd or REPO,
    )


GUEST_DISK = "/machine/peripheral/virtio0/virtio-backend"  # the document's virtio0, as qemu-io -d names it


def qemu_io_write(pattern: int, offset_mib: int, length_mib: int) -> str:
    """A script line writing through the guest's disk, i.e. into whatever node is its active layer."""
    return (f"human-monitor-command command-line='qemu-io -d {GUEST_DISK} "
            f"\"write -P {pattern:#x} {offset_mib}M {length_mib}M\"'\n")


def snapshot_sync(base: str, top: str) -> str:
    """The document's blockdev-snapshot-sync line putting node-TOP (top.qcow2) over node-BASE."""
    return (f"blockdev-snapshot-sync node-name=node-{base} snapshot-file={top.lower()}.qcow2 "
            f"snapshot-node-name=node-{top} format=qcow2\n")
