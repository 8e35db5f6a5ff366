"""/shell in scripts: its output on stderr (stdout stays JSON lines), its status fails the line."""

from __future__ import annotations

from tests.conftest import json_lines, run_qmpsh


def test_shell_output_goes_to_stderr_and_a_failure_fails_the_line(qemu):
    result = run_qmpsh(qemu.socket, stdin="/shell echo made-by-sh\nquery-status\n/shell exit 3\n")
    assert result.returncode == 1
    assert [doc["return"]["status"] for doc in json_lines(result.stdout)] == ["prelaunch"]
    assert result.stderr.splitlines() == ["made-by-sh", "error: /shell: exit 3 exited with status 3"]


def test_shell_runs_in_the_launch_work_directory(tmp_path):
    work = tmp_path / "work"
    result = run_qmpsh("--launch", "--workdir", str(work),
                       stdin="$ qemu-img create -f qcow2 e.qcow2 39M\n/shell qemu-img create -q -f qcow2 e.qcow2 39M\n"
                             'blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}\n')
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == [{"return": {}}]
    assert result.stderr == "skipped shell command: '/shell qemu-img create -f qcow2 e.qcow2 39M' runs it (line 1)\n"
    assert (work / "e.qcow2").exists()


def test_shell_reads_nothing_of_the_script():
    """The script is qmpsh's stdin: a command that reads its input gets none of it."""
    result = run_qmpsh("--launch", stdin="/shell cat\nquery-status\n")
    assert result.returncode == 0, result.stderr
    assert [doc["return"]["status"] for doc in json_lines(result.stdout)] == ["prelaunch"]
