"""``qmpsh --domain NAME -c qemu+ssh://root@127.0.0.1:PORT/system``: a remote libvirt URI, end to end.

The session's domain, reached the way a remote host's would be: libvirt runs ssh to a test sshd on
a loopback port (``tests.sshd``), which logs root in by a key made for the test and runs
``virt-ssh-helper`` to this machine's libvirtd.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qmpsh.domain import TAINT_NOTE
from tests.conftest import free_port, json_lines, run_qmpsh
from tests.libvirt_fixtures import Domain
from tests.sshd import Sshd, start_sshd, stop_sshd


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    server = start_sshd()
    try:
        yield server
    finally:
        stop_sshd(server)


def test_a_session_over_qemu_ssh(sshd: Sshd, libvirt_domain: Domain):
    uri = sshd.uri()
    script = "query-status\nquery-name\nhuman-monitor-command command-line='info status'\n"
    result = run_qmpsh("--domain", libvirt_domain.name, "-c", uri, stdin=script, env=sshd.env())
    assert result.returncode == 0 and result.stderr == TAINT_NOTE + "\n", result
    status, name, hmp = json_lines(result.stdout)
    assert status["return"]["running"] is False and status["return"]["status"] in ("paused", "prelaunch")
    assert name == {"return": {"name": libvirt_domain.name}}
    assert hmp["return"].startswith("VM status: paused")  # "paused (prelaunch)" on a domain never run
    # through this sshd, by the test's key: not some other way to the local libvirtd
    assert "Accepted publickey for root from 127.0.0.1" in sshd.log.read_text()
    print(f"\ntest sshd up in {sshd.seconds:.2f} s")


@pytest.mark.parametrize("case", ["nothing listens on the port", "the key is not authorized"])
def test_an_ssh_failure_exits_3_in_one_line(sshd: Sshd, libvirt_domain: Domain, case: str):
    if case == "nothing listens on the port":
        port = free_port()
        uri, why = sshd.uri(port=port), f"ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    else:
        uri, why = sshd.uri(key=sshd.stranger), "root@127.0.0.1: Permission denied (publickey)."
    result = run_qmpsh("--domain", libvirt_domain.name, "-c", uri, stdin="query-status\n", env=sshd.env())
    assert (result.returncode, result.stdout) == (3, ""), result
    assert result.stderr == f"error: the remote connection to libvirtd at {uri} failed: {why}\n", result.stderr
