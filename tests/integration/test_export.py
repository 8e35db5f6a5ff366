"""``qmpsh --export python LOG``: a session's -l log as a Python program, run against a fresh QEMU.

The document's drive-mirror with pivot is done once through scripted qmpsh with ``-l``; the log is
exported, and the program (run with the venv's Python, on qemu.qmp) does the same to a fresh QEMU:
it waits for BLOCK_JOB_READY before block-job-complete, and leaves the same chain and the same data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, qemu_img, qmpsh_env, run_qmpsh, seed_args
from tests.integration.test_seed_flows import (BLOCK_JOB_COMPLETE, DRIVE_MIRROR, QUIT, Script, header_backing,
                                               stopped)


def workdirs(tmp_path: Path) -> tuple[Path, Path]:
    """A directory for the QEMU the session ran on, and one for the fresh QEMU that does it again."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    return first, second


def same_pivot(first: Path, second: Path) -> None:
    """Both QEMUs left the mirror's pivot: b.qcow2 on a.qcow2, and a standalone e.qcow2 of the same data."""
    for where in (first, second):
        assert header_backing(where / "b.qcow2") == "a.qcow2"
        assert header_backing(where / "e.qcow2") is None
    assert qemu_img("compare", str(first / "e.qcow2"), str(second / "e.qcow2")).returncode == 0


def mirror_with_pivot() -> Script:
    script = Script().chain("AB").add(DRIVE_MIRROR.replace("node-D", "node-B"), "drive-mirror", echo=True)
    script.wait("BLOCK_JOB_READY").add(BLOCK_JOB_COMPLETE, "block-job-complete", echo=True, pasted_replies=1)
    return script.wait("BLOCK_JOB_COMPLETED").add(QUIT, "quit")


def exported(log: Path, tmp_path: Path) -> Path:
    result = run_qmpsh("--export", "python", str(log))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    program = tmp_path / "replay.py"
    program.write_text(result.stdout)
    return program


def run_program(program: Path, socket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(program), socket], capture_output=True, text=True, timeout=90)


def test_the_exported_program_does_what_the_session_did(qemu_factory, tmp_path):
    first, second = workdirs(tmp_path)
    log = tmp_path / "session.log"
    vm = qemu_factory(workdir=first)
    outcome = run_qmpsh("-l", str(log), vm.socket, stdin=mirror_with_pivot().text, timeout=90)
    assert outcome.returncode == 0, outcome.stderr
    stopped(vm)

    program = exported(log, tmp_path)
    assert program.read_text().index("events.expect('BLOCK_JOB_READY'") \
        < program.read_text().index("qmp.execute('block-job-complete'")
    fresh = qemu_factory(workdir=second)
    replayed = run_program(program, fresh.socket)
    assert replayed.returncode == 0, replayed.stderr
    stopped(fresh)
    # The same pivot: the guest's chain was mirrored to e.qcow2, standalone, with the same data.
    same_pivot(first, second)


def test_the_program_fails_loudly_at_the_first_error_reply(qemu_factory, tmp_path):
    """Against a QEMU whose disk has another node name, the snapshot fails: exit 1, one line saying so."""
    log = tmp_path / "session.log"
    vm = qemu_factory()
    script = Script().chain("AB")
    assert run_qmpsh("-l", str(log), vm.socket, stdin=script.text).returncode == 0
    program = exported(log, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "39M", cwd=other)
    elsewhere = qemu_factory(seed_args(node="node-X"), workdir=other)
    replayed = run_program(program, elsewhere.socket)
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stderr == ("error: blockdev-snapshot-sync: GenericError: Cannot find device='' nor "
                               "node-name='node-A'\n"), replayed.stderr



# -- a script file, and the --record file of its run ---------------------------------------------

STREAM_SCRIPT = """\
#!/usr/bin/env -S qmpsh -e
# The overlay: made by qemu-img, then put over node-A.
/shell qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
{"execute": "blockdev-snapshot-sync",
 "arguments": {"node-name": "node-A", "snapshot-file": "b.qcow2", "snapshot-node-name": "node-B",
               "format": "qcow2", "mode": "existing"}}
!human-monitor-command command-line='qemu-io -d /machine/peripheral/virtio0/virtio-backend "write -P 0x22 1M 2M"'
# Stream a.qcow2 into b.qcow2, then again with the same job id: the first job's end must not end the second's wait.
!block-stream device=node-B \\
    job-id=job0
/wait BLOCK_JOB_COMPLETED device=job0
!block-stream device=node-B job-id=job0
/job job0
query-block
quit
"""


def calls(program: str) -> list[str]:
    """The lines of the program's steps that do something (no comments)."""
    body = program.split("async def steps(", 1)[1].split("\n\n\n", 1)[0].splitlines()[1:]
    return [line.strip() for line in body if not line.strip().startswith("#")]


def both_ways(qemu_factory, tmp_path: Path, text: str, timeout: float = 90) -> tuple[Path, Path, str]:
    """``text`` run as a script file (with --record) on one QEMU, then exported and run on a fresh one (within
    ``timeout`` seconds); the two work directories and the program. The --record file is exported to the same
    steps."""
    first, second = workdirs(tmp_path)
    script, recorded = tmp_path / "script.qmp", tmp_path / "script-record.qmp"
    script.write_text(text)
    vm = qemu_factory(workdir=first)
    env = qmpsh_env(PYTHONPATH=str(REPO))  # /shell runs in qmpsh's directory: QEMU's here
    ran = run_qmpsh("--record", str(recorded), vm.socket, str(script), cwd=first, env=env, timeout=90)
    assert ran.returncode == 0, ran.stderr
    stopped(vm)

    program = exported(script, tmp_path)
    # The --record file (key=value lines, as sent) is exported to the same steps.
    assert calls(run_qmpsh("--export", "python", str(recorded)).stdout) == calls(program.read_text())
    fresh = qemu_factory(workdir=second)
    again = subprocess.run([sys.executable, str(program), fresh.socket], capture_output=True, text=True,
                           timeout=timeout, cwd=second)
    assert again.returncode == 0, again.stderr
    stopped(fresh)
    return first, second, program.read_text()


def test_an_exported_script_and_its_record_do_what_the_script_did(qemu_factory, tmp_path):
    first, second, text = both_ways(qemu_factory, tmp_path, STREAM_SCRIPT)
    assert "    # Stream a.qcow2 into b.qcow2, then again" in text and "#!/usr/bin/env -S qmpsh" not in text
    assert calls(text)[0] == "subprocess.run('qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2', " \
                             "shell=True, check=True)", text
    assert "await events.expect('BLOCK_JOB_COMPLETED', {'device': 'job0'})" in calls(text)
    assert "await events.job('job0')" in calls(text)
    for where in (first, second):
        assert header_backing(where / "b.qcow2") is None  # streamed: standalone
    assert qemu_img("compare", str(first / "b.qcow2"), str(second / "b.qcow2")).returncode == 0


MIRROR_SCRIPT = """\
!human-monitor-command command-line='qemu-io -d /machine/peripheral/virtio0/virtio-backend "write -P 0x11 0 4M"'
!drive-mirror device=node-A job-id=job0 target=e.qcow2 sync=full format=qcow2
/job job0
!block-job-complete device=job0
/job job0
quit
"""


def test_an_exported_scripts_job_lines_wait_for_ready_then_for_the_end(qemu_factory, tmp_path):
    """The first /job ends at BLOCK_JOB_READY, the second, after block-job-complete, at the job's end."""
    first, second, text = both_ways(qemu_factory, tmp_path, MIRROR_SCRIPT)
    steps = calls(text)
    jobs = [index for index, line in enumerate(steps) if line == "await events.job('job0')"]
    assert len(jobs) == 2 and jobs[0] < steps.index("await qmp.execute('block-job-complete', {'device': 'job0'})") \
        < jobs[1], text
    for where in (first, second):
        assert header_backing(where / "e.qcow2") is None
    assert qemu_img("compare", str(first / "e.qcow2"), str(second / "e.qcow2")).returncode == 0
    assert qemu_img("compare", str(first / "a.qcow2"), str(second / "e.qcow2")).returncode == 0


def test_an_exported_script_fails_at_an_error_reply(qemu, tmp_path):
    script = tmp_path / "bad.qmp"
    script.write_text('query-status\n{"execute": "block-stream", "arguments": {"device": "nonode"}}\n'
                      "/shell touch never\n")
    ran = run_program(exported(script, tmp_path), qemu.socket)
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.startswith("error: block-stream: GenericError: "), ran.stderr
    assert not (REPO / "never").exists()


OVERLAY = STREAM_SCRIPT.split("!human-monitor-command", 1)[0]  # b.qcow2 over a.qcow2, as node-B
TAKEN_ENDS = """\
# Both of the job's final events are taken by /wait: /job answers from query-jobs, as qmpsh's.
/wait BLOCK_JOB_COMPLETED device=job0
/wait JOB_STATUS_CHANGE id=job0 status=concluded
/job job0
"""


def test_an_exported_job_line_after_its_end_was_waited_for_answers_from_query_jobs(qemu_factory, tmp_path):
    """The job concluded (not dismissed) and its end taken: the program's /job does not wait for it (it hung)."""
    script = OVERLAY + "!block-stream device=node-B job-id=job0 auto-dismiss=false\n" + TAKEN_ENDS + "quit\n"
    first, second, text = both_ways(qemu_factory, tmp_path, script, timeout=20)
    assert "await events.job('job0')" in calls(text)
    for where in (first, second):
        assert header_backing(where / "b.qcow2") is None


def test_an_exported_job_line_fails_for_a_job_gone_with_its_end_taken(qemu, tmp_path):
    """Dismissed when it concluded, its end taken: no such job, as qmpsh's /job says (exit 1, not a hang)."""
    script = tmp_path / "gone.qmp"
    script.write_text(OVERLAY + "!block-stream device=node-B job-id=job0\n" + TAKEN_ENDS + "/shell touch never\n")
    ran = subprocess.run([sys.executable, str(exported(script, tmp_path)), qemu.socket], capture_output=True,
                         text=True, timeout=20, cwd=tmp_path)
    assert (ran.returncode, ran.stderr) == (1, "error: no job 'job0'\n")
    assert not (tmp_path / "never").exists()
