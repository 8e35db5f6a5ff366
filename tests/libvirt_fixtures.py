"""Real libvirt for the libvirt transport's tests: the daemons, and one transient domain per session.

As root, ``virtlogd -d`` and ``libvirtd -d`` (Debian's libvirt-daemon-system, which
``bash .ci/setup test`` installs) are started when they do not answer, and only those are stopped
at the end; daemons that were running already are used and left alone. One transient, paused TCG
q35 domain with a qcow2 disk serves every test of the session and is destroyed at the end.

Where ``/dev/kvm`` exists but QEMU cannot use it, the libvirtd started here sees a ``/dev/kvm`` it
may not open: libvirt 9.0 checks only that its QEMU user may open the device, finds that KVM
"should be usable now" but was not when it probed QEMU, and probes QEMU again at every capability
lookup, about 14 probes and half a minute for each domain start, rewriting
``/var/cache/libvirt/qemu/capabilities/``. Masked, its view and QEMU's agree and the cache holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import QEMU, qemu_img

URI = "qemu:///system"
RUN = Path("/run")
LIBVIRTD_SOCKET = RUN / "libvirt/libvirt-sock"
VIRTLOGD_SOCKET = RUN / "libvirt/virtlogd-sock"
CAPS_CACHE = Path("/var/cache/libvirt/qemu/capabilities")
IMAGES = Path("/var/lib/libvirt/images")  # libvirt's own, which its QEMU user may enter
PACKAGES = "libvirt-daemon-system, libvirt-daemon-driver-qemu and libvirt-clients"

DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>{qemu}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{image}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@dataclass
class Daemons:
    """libvirt's daemons as the session found or started them."""

    uri: str
    started: list[str] = field(default_factory=list)  # the ones this session stops: "virtlogd", "libvirtd"
    kvm_masked: bool = False
    seconds: float = 0.0  # to start them (0 when both were running)
    log: Path | None = None  # the started libvirtd's log: its capability cache's debug lines, warnings


@dataclass
class Domain:
    """A running (paused) transient domain."""

    uri: str
    name: str
    dir: Path
    image: Path
    seconds: float  # to create it, paused


def tool(name: str) -> str:
    """The path of libvirt's program ``name``; the daemons live in /usr/sbin, which a PATH may lack."""
    found = shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{name} is missing: run 'bash .ci/setup test' (installs Debian's {PACKAGES})")
    return found


def require_libvirt() -> None:
    """Fail, never skip, when the tests cannot run libvirt here."""
    if os.geteuid() != 0:
        pytest.fail("the libvirt tests start libvirtd and domains on qemu:///system: run them as root")
    for name in ("libvirtd", "virtlogd", "virsh"):
        tool(name)


def answers(path: Path) -> bool:
    """A daemon listens on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def kvm_unusable() -> bool:
    """There is a /dev/kvm, and QEMU fails to start with it."""
    if not os.path.exists("/dev/kvm"):
        return False
    argv = [QEMU, "-machine", "none", "-accel", "kvm", "-display", "none", "-nodefaults", "-qmp", "stdio"]
    quit_ = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
    done = subprocess.run(argv, input=quit_, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode != 0


def virsh(*args: str, uri: str = URI, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [tool("virsh"), "-q", "-c", uri, *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=300)


def _wait(ready: object, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.1)


def _libvirtd_serves() -> bool:
    return answers(LIBVIRTD_SOCKET) and virsh("version", check=False).returncode == 0


def start_daemons() -> Daemons:
    """Start virtlogd and libvirtd where they do not answer."""
    require_libvirt()
    daemons = Daemons(URI)
    begin = time.monotonic()
    if not answers(VIRTLOGD_SOCKET):
        subprocess.run([tool("virtlogd"), "-d"], check=True, timeout=60)
        daemons.started.append("virtlogd")
        _wait(lambda: answers(VIRTLOGD_SOCKET), "virtlogd")
    if not answers(LIBVIRTD_SOCKET):
        argv = [tool("libvirtd"), "-d"]
        if kvm_unusable():
            mask = RUN / "qmpsh-test-no-kvm"  # a device no one but root may open (/dev/null's numbers)
            mask.unlink(missing_ok=True)
            os.mknod(mask, 0o000 | stat.S_IFCHR, os.makedev(1, 3))
            mask.chmod(0o000)
            argv = ["unshare", "--mount", "--propagation", "private", "--",
                    "sh", "-c", 'mount --bind "$1" /dev/kvm && exec "$2" -d', "sh", str(mask), argv[0]]
            daemons.kvm_masked = True
        daemons.log = Path(tempfile.mkstemp(prefix="qmpsh-test-libvirtd-", suffix=".log")[1])
        env = {**os.environ, "LIBVIRT_LOG_FILTERS": "1:qemu.qemu_capabilities",
               "LIBVIRT_LOG_OUTPUTS": f"1:file:{daemons.log}"}
        subprocess.run(argv, check=True, timeout=60, env=env)
        daemons.started.append("libvirtd")
    _wait(_libvirtd_serves, "libvirtd")
    if daemons.started:
        daemons.seconds = time.monotonic() - begin
    return daemons


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state == "Z"


def stop_daemon(name: str) -> None:
    """SIGTERM the daemon its pid file names, and wait until it is gone."""
    pidfile = RUN / f"{name}.pid"
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _gone(pid):
            return


#: The names of the domains the tests and the benchmark make.
OUR_DOMAINS = ("qmpsh-test-", "qmpsh-bench-")


def destroy_our_domains() -> None:
    """Destroy every running domain the tests made: a domain's QEMU outlives the libvirtd that
    started it, so one a test could not destroy (it failed half-way) would run on for good."""
    listed = virsh("list", "--name", check=False)
    for name in listed.stdout.split():
        if name.startswith(OUR_DOMAINS):
            virsh("destroy", name, check=False)


def stop_daemons(daemons: Daemons) -> None:
    if "libvirtd" in daemons.started:
        destroy_our_domains()
    for name in reversed(daemons.started):
        stop_daemon(name)
    if daemons.kvm_masked:
        (RUN / "qmpsh-test-no-kvm").unlink(missing_ok=True)
    if daemons.log is not None:
        daemons.log.unlink(missing_ok=True)


def why_probed(daemons: Daemons) -> list[str]:
    """The reasons libvirtd logged for finding its cached capabilities of QEMU invalid."""
    if daemons.log is None:
        return ["(libvirtd was running already: no log of its reasons here)"]
    return [line.split(" : ", 2)[-1] for line in daemons.log.read_text().splitlines()
            if "Outdated capabilities" in line or "KVM was" in line]


def domain_xml(name: str, image: Path) -> str:
    return DOMAIN_XML.format(name=name, qemu=shutil.which(QEMU) or QEMU, image=image)


def new_image(prefix: str) -> tuple[Path, Path]:
    """A directory libvirt's QEMU user may enter, with a 64 MiB qcow2 image in it."""
    where = IMAGES if IMAGES.is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    workdir.chmod(0o711)
    image = workdir / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", str(image), "64M")
    return workdir, image


def create_domain(uri: str, prefix: str = "qmpsh-test-") -> Domain:
    """A transient TCG q35 domain with a qcow2 disk, created paused (``virsh create --paused``)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    workdir, image = new_image(f"{name}-")
    xml = workdir / "domain.xml"
    xml.write_text(domain_xml(name, image))
    begin = time.monotonic()
    made = virsh("create", str(xml), "--paused", uri=uri, check=False)
    if made.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"virsh create failed: {made.stderr.strip()}")
    return Domain(uri, name, workdir, image, time.monotonic() - begin)


@contextlib.contextmanager
def inactive_domain() -> Iterator[str]:
    """A domain libvirt knows (defined) but that is not running: its name; undefined at the end."""
    workdir, image = new_image("qmpsh-test-inactive-")
    name = workdir.name.rstrip("-")
    xml = workdir / "domain.xml"
    xml.write_text(domain_xml(name, image))
    virsh("define", str(xml))
    try:
        yield name
    finally:
        virsh("undefine", name, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def libvirt_clients(pid: int) -> list[str]:
    """libvirtd's ids for the connections of process ``pid``, as virt-admin lists them."""
    admin = tool("virt-admin")
    listing = subprocess.run([admin, "srv-clients-list", "libvirtd"], capture_output=True, text=True, check=True)
    ours = []
    for client in [line.split()[0] for line in listing.stdout.splitlines()[2:] if line.strip()]:
        info = subprocess.run([admin, "client-info", "libvirtd", client], capture_output=True, text=True,
                              check=False).stdout
        if re.search(rf"unix_process_id\s*:\s*{pid}\b", info):
            ours.append(client)
    return ours


def qemu_pid(domain: Domain) -> int:
    """The pid of the domain's QEMU, from the pid file libvirt keeps for it."""
    return int((RUN / "libvirt/qemu" / f"{domain.name}.pid").read_text())


@contextlib.contextmanager
def frozen(domain: Domain) -> Iterator[None]:
    """The domain's QEMU stopped (SIGSTOP): libvirt takes commands for it and never answers; thawed at the end."""
    pid = qemu_pid(domain)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def destroy_domain(domain: Domain) -> None:
    virsh("destroy", domain.name, uri=domain.uri, check=False)
    shutil.rmtree(domain.dir, ignore_errors=True)


def caps_cache() -> dict[str, float]:
    """The capability cache's files and their mtimes: a re-probe rewrites them."""
    return {path.name: path.stat().st_mtime for path in CAPS_CACHE.glob("*.xml")}


@pytest.fixture(scope="session")
def libvirt_daemons() -> Iterator[Daemons]:
    """virtlogd and libvirtd, started if they were not running, stopped at the end if started here."""
    daemons = start_daemons()
    try:
        yield daemons
    finally:
        stop_daemons(daemons)


@pytest.fixture(scope="session")
def libvirt_domain(libvirt_daemons: Daemons) -> Iterator[Domain]:
    """One transient, paused TCG q35 domain (disk node names libvirt-1-format, libvirt-1-storage)
    shared by the session's tests, which leave it paused; destroyed at the end."""
    domain = create_domain(libvirt_daemons.uri)
    try:
        yield domain
    finally:
        destroy_domain(domain)


@pytest.fixture(scope="module")
def own_domain(libvirt_daemons: Daemons) -> Iterator[Domain]:
    """A domain of this module's own, for what must never happen to the shared one: its QEMU
    stopped, then destroyed (by the module's last test)."""
    domain = create_domain(libvirt_daemons.uri, "qmpsh-test-own-")
    try:
        yield domain
    finally:
        destroy_domain(domain)


@pytest.fixture(scope="session")
def libvirt_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The session's one event loop for libvirt: libvirt-python binds its events to one loop per process."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()
