"""``/domains`` and ``/connect`` in scripts, on real libvirt domains and a plain QEMU socket."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from qmpsh.domain import TAINT_NOTE
from qmpsh.libvirt_transport import LIST_TIMEOUT
from tests.conftest import REPO, Qemu, json_lines, qmpsh_env, run_qmpsh
from tests.libvirt_fixtures import Daemons, Domain, create_domain, destroy_domain


def on(domain: Domain, stdin: str):
    return run_qmpsh("--domain", domain.name, "-c", domain.uri, stdin=stdin)


def test_domains_lists_the_running_domain(libvirt_domain: Domain):
    result = on(libvirt_domain, "/domains\n")
    assert result.returncode == 0, result
    (listing,) = json_lines(result.stdout)
    (ours,) = [row for row in listing if row["name"] == libvirt_domain.name]
    assert ours["state"] == "paused" and isinstance(ours["id"], int) and ours["id"] > 0


def test_domains_gives_up_on_a_host_that_never_answers(qemu: Qemu):
    """An ssh server that accepts and then says nothing: the listing ends after its time, and qmpsh
    ends with it (a listing thread still stuck in ssh never holds up the exit)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"qemu+ssh://root@127.0.0.1:{silent.getsockname()[1]}/system"
        started = time.monotonic()
        result = run_qmpsh(qemu.socket, stdin="/domains\nquery-name\n", env=qmpsh_env(LIBVIRT_DEFAULT_URI=uri),
                           timeout=60)
    assert time.monotonic() - started < LIST_TIMEOUT + 20
    assert result.returncode == 1, result
    assert result.stderr == f"error: /domains: no answer from libvirtd at {uri} in {LIST_TIMEOUT:g} s\n"
    assert json_lines(result.stdout) == [{"return": {}}]


def test_domains_in_a_socket_session_asks_libvirts_default_uri(libvirt_domain: Domain, qemu: Qemu):
    result = run_qmpsh(qemu.socket, stdin="/domains\n", env=qmpsh_env(LIBVIRT_DEFAULT_URI=libvirt_domain.uri))
    assert result.returncode == 0 and result.stderr == "", result
    (listing,) = json_lines(result.stdout)
    assert libvirt_domain.name in [row["name"] for row in listing]


def test_connect_moves_the_session_to_another_domain(libvirt_daemons: Daemons, libvirt_domain: Domain):
    other = create_domain(libvirt_daemons.uri, "qmpsh-test-other-")
    try:
        result = on(libvirt_domain, f"query-name\n/connect {other.name}\nquery-name\nblock-stream devcie=x\n")
    finally:
        destroy_domain(other)
    assert result.returncode == 1, result
    names = [reply["return"]["name"] for reply in json_lines(result.stdout)]
    assert names == [libvirt_domain.name, other.name]
    lines = result.stderr.removeprefix(TAINT_NOTE + "\n").splitlines()
    assert lines[0] == f"connected to {other.name} at {other.uri}"
    assert "devcie" in lines[1]  # the new domain's schema checks the line: nothing is sent


def test_connect_to_an_unknown_domain_fails_in_one_line_and_the_session_stays(libvirt_domain: Domain):
    result = on(libvirt_domain, "/connect qmpsh-no-such-domain\nquery-name\n")
    assert result.returncode == 1, result
    assert json_lines(result.stdout) == [{"return": {"name": libvirt_domain.name}}]
    assert result.stderr.removeprefix(TAINT_NOTE + "\n") == (
        f"error: /connect: no domain 'qmpsh-no-such-domain' at {libvirt_domain.uri} "
        f"(still connected to {libvirt_domain.name} at {libvirt_domain.uri})\n")


def test_connect_moves_a_domain_session_to_a_socket(libvirt_domain: Domain, qemu: Qemu):
    result = on(libvirt_domain, f"/connect {qemu.socket}\nquery-named-block-nodes\n")
    assert result.returncode == 0, result
    (nodes,) = json_lines(result.stdout)
    assert "node-A" in [node["node-name"] for node in nodes["return"]]
    assert result.stderr.removeprefix(TAINT_NOTE + "\n") == f"connected to {qemu.socket}\n"


def test_connect_from_a_socket_to_a_domain_and_back(libvirt_domain: Domain, qemu: Qemu):
    script = f"/connect {libvirt_domain.name}\nquery-name\n/connect {qemu.socket}\nquery-name\n"
    result = run_qmpsh(qemu.socket, stdin=script, env=qmpsh_env(LIBVIRT_DEFAULT_URI=libvirt_domain.uri))
    assert result.returncode == 0, result
    assert [reply["return"].get("name") for reply in json_lines(result.stdout)] == [libvirt_domain.name, None]
    assert result.stderr == (f"connected to {libvirt_domain.name} at {libvirt_domain.uri}\n{TAINT_NOTE}\n"
                             f"connected to {qemu.socket}\n")


def test_connect_to_a_missing_socket_fails_in_one_line(qemu: Qemu):
    result = run_qmpsh(qemu.socket, stdin=f"/connect {qemu.dir}/missing.sock\nquery-status\n")
    assert result.returncode == 1, result
    assert len(json_lines(result.stdout)) == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: /connect: cannot connect to {qemu.dir}/missing.sock: ") and line.endswith(
        f"(still connected to {qemu.socket})"), line


def test_a_plain_name_is_the_running_domain_even_with_a_file_of_that_name_here(libvirt_domain: Domain, qemu: Qemu,
                                                                               tmp_path: Path):
    """A word with no "/" is a domain when one of that name runs; ./NAME is the file; a file with
    no running domain of its name is the file."""
    here = tmp_path / "here"
    here.mkdir()
    (here / libvirt_domain.name).symlink_to(qemu.socket)
    (here / "qmp.sock").symlink_to(qemu.socket)
    script = (f"/connect {libvirt_domain.name}\nquery-name\n/connect ./{libvirt_domain.name}\nquery-name\n"
              f"/connect {libvirt_domain.name}\nquery-name\n/connect qmp.sock\nquery-name\n")
    env = qmpsh_env(LIBVIRT_DEFAULT_URI=libvirt_domain.uri, PYTHONPATH=str(REPO))  # this qmpsh, from there too
    result = run_qmpsh(qemu.socket, stdin=script, env=env, cwd=here)
    assert result.returncode == 0, result
    names = [reply["return"].get("name") for reply in json_lines(result.stdout)]
    assert names == [libvirt_domain.name, None, libvirt_domain.name, None]
    assert result.stderr.splitlines()[-1] == "connected to qmp.sock"
