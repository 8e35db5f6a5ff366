"""Scripted qmpsh against a real qemu-storage-daemon: no VM, no devices, no HMP, no query-status.

The daemon serves the same block layer as QEMU, so the document's block jobs run on it the same
way; the data is checked with ``qemu-img compare`` against a raw reference built with ``qemu-io``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Qemu, json_lines, qemu_img, qemu_io, run_qmpsh, start_storage_daemon


@pytest.fixture
def daemon_with_b(tmp_path: Path):
    """[A] <- [B] on disk, A opened by the daemon as node-A; B not yet added."""
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "8M", cwd=tmp_path)
    qemu_img("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2", cwd=tmp_path)
    qemu_io(tmp_path / "a.qcow2", "write -P 0x11 0 4M")
    qemu_io(tmp_path / "b.qcow2", "write -P 0x22 1M 2M")
    qemu_img("create", "-q", "-f", "raw", "expected.raw", "8M", cwd=tmp_path)
    qemu_io(tmp_path / "expected.raw", "write -P 0x11 0 4M", "write -P 0x22 1M 2M", fmt="raw")
    daemon = start_storage_daemon(tmp_path, ["--blockdev", "driver=file,node-name=file-A,filename=a.qcow2",
                                             "--blockdev", "driver=qcow2,node-name=node-A,file=file-A"])
    yield daemon
    daemon.stop()


def test_stream_on_a_storage_daemon(daemon_with_b: Qemu):
    """blockdev-add with dotted keys, /tree, a stream job followed by /job, then quit: B holds all the data."""
    script = "\n".join([
        "blockdev-add driver=qcow2 node-name=node-B file.driver=file file.filename=b.qcow2 backing=node-A",
        "/tree",
        "block-stream device=node-B job-id=stream0 speed=1M",  # speed: a size, coerced by the daemon's schema
        "block-job-set-speed device=stream0 speed=0",
        "/job stream0",
        "/tree",
        "blockdev-del node-name=node-B",
        "quit",
    ]) + "\n"
    result = run_qmpsh(daemon_with_b.socket, stdin=script)
    assert result.returncode == 0, result.stderr
    out = json_lines(result.stdout)
    trees = [line for line in out if isinstance(line, list)]
    assert [root["chain"] for root in trees[0] if root["node-name"] == "node-B"] == [["node-A", "node-B"]]
    assert [root["chain"] for root in trees[1] if root["node-name"] == "node-B"] == [["node-B"]]
    sent = [line for line in out if isinstance(line, dict) and "event" not in line]
    assert sent == [{"return": {}}] * 5, result.stdout  # add, stream, set-speed, del, quit
    events = [line["event"] for line in out if isinstance(line, dict) and "event" in line]
    assert "BLOCK_JOB_COMPLETED" in events  # (the daemon sends no SHUTDOWN on quit)
    daemon_with_b.process.wait(timeout=10)  # quit: the daemon is gone and the images unlocked
    info = json.loads(qemu_img("info", "--output=json", "b.qcow2", cwd=daemon_with_b.dir).stdout)
    assert "backing-filename" not in info
    qemu_img("compare", "-f", "qcow2", "-F", "raw", "b.qcow2", "expected.raw", cwd=daemon_with_b.dir)


def test_a_command_the_daemon_lacks_fails_honestly(storage_daemon: Qemu):
    """query-status does not exist without a VM: the error is QEMU's, the line fails, the script goes on."""
    result = run_qmpsh(storage_daemon.socket, stdin="query-status\nquery-version\n")
    assert result.returncode == 1
    out = json_lines(result.stdout)
    assert out[0]["error"]["class"] == "CommandNotFound"
    assert "qemu" in out[1]["return"]
    assert result.stderr.strip().splitlines() == [
        "error: line 1: query-status: CommandNotFound: The command query-status has not been found"]
