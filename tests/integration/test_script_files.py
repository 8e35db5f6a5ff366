"""Script files: ``qmpsh ADDRESS FILE...``, ``#!`` scripts, comments, ``\\`` continuation, FILE:LINE errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, qmpsh_env, run_qmpsh


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def replies(stdout: str) -> list[str]:
    return [next(iter(json.loads(line))) for line in stdout.splitlines()]


def test_files_run_in_order_with_their_names_in_errors(qemu, tmp_path):
    first = write(tmp_path / "first.qmp", "# the VM's state\nquery-status\n"
                                           "qom-get path=/machine \\\n    property=type\n")
    second = write(tmp_path / "second.qmp", "query-name\nblock-job-cancel device=nojob\nquery-kvm x=\n")
    run = run_qmpsh(qemu.socket, str(first), str(second), "-", stdin="query-version\n")
    assert run.returncode == 1
    assert replies(run.stdout) == ["return", "return", "return", "error", "return"]
    assert json.loads(run.stdout.splitlines()[1]) == {"return": "pc-q35-7.2-machine"}  # the continued line
    said = run.stderr.splitlines()  # (a line that cannot run is said at once, a reply when it comes)
    assert f"error: {second}:2: block-job-cancel: DeviceNotActive: Block job 'nojob' not found" in said
    assert any(line.startswith(f"error: {second}:3, column 11: unknown argument 'x'") for line in said), said


def test_a_file_left_open_fails_at_its_end_and_the_next_file_runs(qemu, tmp_path):
    open_one = write(tmp_path / "open.qmp", '{"execute": "query-status"\n')
    after = write(tmp_path / "after.qmp", "query-name\n")
    run = run_qmpsh(qemu.socket, str(open_one), str(after))
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: {open_one}:1, column ")
    assert "unexpected end of input" in run.stderr
    assert replies(run.stdout) == ["return"]


def test_a_hash_bang_script_runs_with_the_address_from_qmp_socket(qemu, tmp_path):
    script = write(tmp_path / "check", "#!/usr/bin/env -S qmpsh -e\nquery-status\nblock-job-cancel device=nojob\n"
                                       "query-name\n")
    script.chmod(0o755)
    env = qmpsh_env(QMP_SOCKET=qemu.socket, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    PYTHONPATH=str(REPO))  # the qmpsh of this checkout, as python -m qmpsh runs it
    run = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1, run.stderr
    assert replies(run.stdout) == ["return", "error"]  # -e: query-name is not run
    assert run.stderr == f"error: {script}:3: block-job-cancel: DeviceNotActive: Block job 'nojob' not found\n"


def test_a_script_that_cannot_be_read_is_a_usage_error(qemu, tmp_path):
    run = run_qmpsh(qemu.socket, str(tmp_path / "missing.qmp"))
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == f"qmpsh: error: cannot read script {tmp_path / 'missing.qmp'}"
