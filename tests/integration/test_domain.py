"""``qmpsh --domain``: the scripted contract on a real libvirt domain, through libvirtd.

The session's one domain is shared: a test that runs it leaves it paused again. A test that
changes the block graph makes a domain of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from qmpsh.domain import TAINT_NOTE
from tests.conftest import REPO, json_lines, qemu_img, qemu_io, qmpsh_env, run_qmpsh
from tests.integration.test_seed_flows import assert_same_data, chain_of, header_backing
from tests.libvirt_fixtures import (
    Daemons,
    Domain,
    create_domain,
    destroy_domain,
    frozen,
    inactive_domain,
    libvirt_clients,
    tool,
    virsh,
)

BOGUS_URI = "qemu:///system?socket=/nonexistent/libvirt-sock"
NOTE = TAINT_NOTE + "\n"


def on(domain: Domain, *args: str, stdin: str = "", env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_qmpsh("--domain", domain.name, "-c", domain.uri, *args, stdin=stdin, env=env, timeout=timeout)


def test_query_status_is_a_json_line(libvirt_domain: Domain):
    result = on(libvirt_domain, stdin="query-status\n")
    assert result.returncode == 0 and result.stderr == NOTE, result
    (reply,) = json_lines(result.stdout)
    assert reply["return"]["running"] is False and reply["return"]["status"] in ("paused", "prelaunch")


def test_the_default_uri_comes_from_the_environment(libvirt_domain: Domain):
    result = run_qmpsh("--domain", libvirt_domain.name, stdin="query-name\n",
                       env=qmpsh_env(LIBVIRT_DEFAULT_URI=libvirt_domain.uri))
    assert result.returncode == 0 and result.stderr == NOTE, result
    assert json_lines(result.stdout) == [{"return": {"name": libvirt_domain.name}}]


def test_a_typo_is_caught_by_the_schema_and_nothing_is_sent(libvirt_domain: Domain):
    result = on(libvirt_domain, "-v", stdin="block-stream devcie=libvirt-1-format\nquery-name\n")
    assert result.returncode == 1
    assert [o["execute"] for o in json_lines(result.stdout) if "execute" in o] == ["query-name"]
    error, source, caret = result.stderr.removeprefix(NOTE).splitlines()
    assert error.startswith("error: line 1, column 14: ") and "devcie" in error
    assert source == "  block-stream devcie=libvirt-1-format" and caret == " " * 15 + "^"


def test_the_users_id_comes_back_and_libvirts_never_shows(libvirt_domain: Domain):
    result = on(libvirt_domain, "-v", stdin='{"execute": "query-name", "id": "mine"}\nquery-name\n')
    assert result.returncode == 0, result
    assert json_lines(result.stdout) == [
        {"execute": "query-name", "id": "mine"},
        {"return": {"name": libvirt_domain.name}, "id": "mine"},
        {"execute": "query-name"},
        {"return": {"name": libvirt_domain.name}},
    ]


def test_events_print_in_order_and_wait_takes_them(libvirt_domain: Domain):
    try:
        result = on(libvirt_domain, stdin="cont\n/wait RESUME\nstop\n/wait STOP\nquery-status\n")
    finally:  # the shared domain stays paused for the tests after this one, whatever happened
        virsh("suspend", libvirt_domain.name, uri=libvirt_domain.uri, check=False)
    assert result.returncode == 0, result
    out = json_lines(result.stdout)
    assert [o.get("event") for o in out if "event" in o] == ["RESUME", "STOP"]
    # Replies in order; where an event falls among them is libvirt's to say (it delivers them apart).
    assert [o["return"] for o in out if "return" in o][:2] == [{}, {}]
    assert out[-1]["return"]["status"] == "paused"


def test_hmp_goes_through_libvirt(libvirt_domain: Domain):
    result = on(libvirt_domain, "-H", stdin="info status\n")
    assert result.returncode == 0, result
    assert result.stdout == "VM status: paused\n"


def test_the_documents_snapshot_and_stream_with_job(libvirt_daemons: Daemons):
    domain = create_domain(libvirt_daemons.uri, "qmpsh-test-stream-")
    try:
        domain.dir.chmod(0o777)  # QEMU, as libvirt's QEMU user, creates the overlay here
        top = domain.dir / "top.qcow2"
        script = (f"query-named-block-nodes\n"
                  f"blockdev-snapshot-sync node-name=libvirt-1-format snapshot-file={top} "
                  f"snapshot-node-name=node-B format=qcow2\n"
                  f"block-stream device=node-B job-id=job0\n"
                  f"/job job0\n"
                  f"query-block-jobs\n")
        result = on(domain, stdin=script)
        assert result.returncode == 0, result
        out = json_lines(result.stdout)
        nodes = {node["node-name"] for node in out[0]["return"]}
        assert {"libvirt-1-format", "libvirt-1-storage"} <= nodes
        completed = [o for o in out if o.get("event") == "BLOCK_JOB_COMPLETED"]
        assert completed and completed[0]["data"]["device"] == "job0"
        assert out[-1] == {"return": []}
    finally:
        destroy_domain(domain)


def test_an_unknown_domain_exits_3(libvirt_daemons: Daemons):
    result = run_qmpsh("--domain", "qmpsh-no-such-domain", "-c", libvirt_daemons.uri, stdin="query-status\n")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"error: no domain 'qmpsh-no-such-domain' at {libvirt_daemons.uri}\n"


def test_a_domain_that_is_not_running_exits_3(libvirt_daemons: Daemons):
    with inactive_domain() as name:
        result = run_qmpsh("--domain", name, "-c", libvirt_daemons.uri, stdin="query-status\n")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"error: domain '{name}' is not running (virsh -c qemu:///system start {name})\n"


@pytest.mark.parametrize("how", ["-c", "LIBVIRT_DEFAULT_URI"])
def test_libvirtd_not_running_exits_3(how: str):
    args, env = (["-c", BOGUS_URI], None) if how == "-c" else ([], qmpsh_env(LIBVIRT_DEFAULT_URI=BOGUS_URI))
    result = run_qmpsh("--domain", "any", *args, stdin="query-status\n", env=env)
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (f"error: libvirtd is not running at {BOGUS_URI}: "
                             f"Failed to connect socket to '/nonexistent/libvirt-sock': No such file or directory\n")


def test_permission_denied_exits_3(libvirt_domain: Domain):
    uri = "qemu:///system?socket=/run/libvirt/libvirt-sock-ro"  # libvirtd makes its clients read-only
    result = run_qmpsh("--domain", libvirt_domain.name, "-c", uri, stdin="query-status\n")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr.startswith(f"error: permission denied by libvirt at {uri}: operation forbidden: "
                                    "read only access prevents"), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_the_connection_dropping_exits_3(libvirt_domain: Domain):
    argv = [sys.executable, "-m", "qmpsh", "--domain", libvirt_domain.name, "-c", libvirt_domain.uri]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=qmpsh_env(), cwd=REPO)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("query-name\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith('{"return"')
        (client,) = libvirt_clients(proc.pid)
        subprocess.run([tool("virt-admin"), "client-disconnect", "libvirtd", client], check=True, capture_output=True)
        out, err = proc.communicate("query-name\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3 and out == ""
    assert err.removeprefix(NOTE) == ("error: connection to QEMU lost while waiting for the reply to query-name: "
                                      f"the connection to libvirtd at {libvirt_domain.uri} is closed: "
                                      "it failed (libvirtd stopped, or dropped this client)\n"), err


def test_a_monitor_that_never_answers_at_connect_exits_3_after_timeout(own_domain: Domain):
    with frozen(own_domain):  # libvirt connects, and query-version never gets its answer
        begin = time.monotonic()
        result = on(own_domain, "--timeout", "2", stdin="query-name\n", timeout=30)
        seconds = time.monotonic() - begin
    assert (result.returncode, result.stdout) == (3, ""), result
    assert result.stderr == (f"error: no reply to query-version from {own_domain.name} at {own_domain.uri} "
                             "within 2 s\n"), result.stderr
    assert seconds < 15, seconds


def test_a_domain_destroyed_under_a_wait_exits_3_at_once(own_domain: Domain):
    """libvirt's lifecycle event ends the /wait: nothing has to be sent to find out."""
    proc = subprocess.Popen([sys.executable, "-m", "qmpsh", "--domain", own_domain.name, "-c", own_domain.uri],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=qmpsh_env(), cwd=REPO)
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write("query-name\n/wait BLOCK_JOB_COMPLETED timeout=0\n")  # a wait without end
        proc.stdin.flush()  # and stdin stays open: only the domain's end can end qmpsh
        assert proc.stdout.readline().startswith('{"return"')
        virsh("destroy", own_domain.name)
        assert proc.wait(timeout=20) == 3
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err.removeprefix(NOTE) == (f"error: connection to QEMU lost during /wait: domain '{own_domain.name}' "
                                      "was destroyed\n")


def test_without_libvirt_python_domain_says_what_to_install_and_exits_2(tmp_path):
    (tmp_path / "libvirt.py").write_text("raise ImportError('No module named libvirt')\n")
    env = qmpsh_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    result = run_qmpsh("--domain", "any", stdin="query-status\n", env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "qmpsh: libvirt domains need libvirt-python: pip install 'qmpsh[libvirt]'\n"


@pytest.mark.parametrize("args", [["--domain", "x", "/tmp/qmp.sock"], ["--domain", "x", "--launch"],
                                  ["-c", "qemu:///system", "/tmp/qmp.sock"]])
def test_domain_excludes_other_servers(args: list[str]):
    result = run_qmpsh(*args)
    assert result.returncode == 2 and result.stdout == ""
    excludes = "qmpsh: error: --domain takes the place of ADDRESS, --launch and --skip-negotiation"
    assert result.stderr.splitlines()[-1] in (excludes, "qmpsh: error: -c/--connect needs --domain")


def test_wait_for_socket_with_domain_is_refused_not_ignored():
    """libvirt's connection waits for nothing: the option was silently ignored."""
    result = run_qmpsh("--domain", "x", "--wait-for-socket", "5", stdin="query-status\n", timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == ("qmpsh: error: --wait-for-socket is for a QMP socket (ADDRESS, "
                                              "--launch), not --domain")


def test_drive_mirror_with_job_and_pivot(libvirt_daemons: Daemons):
    """drive-mirror of a two-layer chain to a standalone copy, followed with /job, pivoted with
    block-job-complete: the guest's disk is then the copy, which holds both layers' data."""
    domain = create_domain(libvirt_daemons.uri, "qmpsh-test-mirror-")
    try:
        domain.dir.chmod(0o777)  # QEMU, as libvirt's QEMU user, creates the overlay and the copy here
        top, copy = domain.dir / "top.qcow2", domain.dir / "copy.qcow2"
        script = (f"{write_through_guest(0x11, 0, 4)}"
                  f"blockdev-snapshot-sync node-name=libvirt-1-format snapshot-file={top} "
                  f"snapshot-node-name=node-top format=qcow2\n"
                  f"{write_through_guest(0x22, 2, 4)}"
                  f"drive-mirror device=node-top target={copy} format=qcow2 node-name=node-copy sync=full "
                  f"job-id=job0\n"
                  f"/job job0\n"
                  f"block-job-complete device=job0\n"
                  f"/wait BLOCK_JOB_COMPLETED device=job0\n"
                  f"query-block\n"
                  f"query-named-block-nodes\n"
                  f"quit\n")
        result = on(domain, stdin=script, timeout=90)
        assert result.returncode == 0, result
        replies = [o for o in json_lines(result.stdout) if "return" in o or "error" in o]
        assert len(replies) in (7, 8) and all("return" in reply for reply in replies), replies  # quit's, if in time
        assert all(reply["return"] == "" for reply in (replies[0], replies[2])), replies  # qemu-io's writes
        completed = [o["data"] for o in json_lines(result.stdout) if o.get("event") == "BLOCK_JOB_COMPLETED"]
        assert len(completed) == 1 and completed[0]["type"] == "mirror" and "error" not in completed[0], completed
        (disk,) = replies[5]["return"]
        assert disk["inserted"]["node-name"] == "node-copy", disk  # pivoted: the guest runs on the copy
        assert chain_of(replies[6]["return"], "node-copy") == [str(copy)]  # standalone: sync=full
        _wait_gone(domain)  # quit: QEMU has let go of the images
        assert header_backing(copy) is None and header_backing(top) == str(domain.image)
        reference = domain.dir / "reference.raw"
        qemu_img("create", "-q", "-f", "raw", str(reference), "64M")
        qemu_io(reference, "write -P 0x11 0 4M", "write -P 0x22 2M 4M", fmt="raw")
        assert_same_data(reference, copy, "the copy")
        assert_same_data(reference, top, "the overlay with its backing file")
    finally:
        destroy_domain(domain)


def write_through_guest(pattern: int, offset_mib: int, length_mib: int) -> str:
    """A script line writing through the guest's disk (libvirt's virtio-disk0), into its active layer."""
    disk = "/machine/peripheral/virtio-disk0/virtio-backend"
    return (f"human-monitor-command command-line='qemu-io -d {disk} "
            f"\"write -P {pattern:#x} {offset_mib}M {length_mib}M\"'\n")


def _wait_gone(domain: Domain) -> None:
    deadline = time.monotonic() + 30
    while virsh("domstate", domain.name, uri=domain.uri, check=False).returncode == 0:
        assert time.monotonic() < deadline, f"{domain.name} still runs after quit"
        time.sleep(0.2)
