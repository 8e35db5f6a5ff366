"""``--record FILE``: a script's successful lines written as they run, a script qmpsh runs again."""

from __future__ import annotations

import json

from tests.conftest import run_qmpsh
from tests.integration.test_export import mirror_with_pivot, same_pivot, workdirs
from tests.integration.test_seed_flows import stopped


def test_a_recorded_drive_mirror_runs_again_on_a_fresh_qemu(qemu_factory, tmp_path):
    first, second = workdirs(tmp_path)
    recorded = tmp_path / "mirror.qmp"
    vm = qemu_factory(workdir=first)
    script = mirror_with_pivot().text.replace("(QEMU) quit", "block-job-cancel device=nojob\n(QEMU) quit")
    run = run_qmpsh("--record", str(recorded), vm.socket, stdin=script, timeout=90)
    assert run.returncode == 1, run.stderr  # the one failed line: not recorded
    stopped(vm)
    body = [line for line in recorded.read_text().splitlines() if not line.startswith("#")]
    assert "/wait BLOCK_JOB_READY device=job0" in body and body[-1] == "quit", body
    assert body.index("/wait BLOCK_JOB_READY device=job0") < body.index("block-job-complete device=job0"), body
    assert not any("nojob" in line for line in body), body
    assert recorded.stat().st_mode & 0o777 == 0o600

    fresh = qemu_factory(workdir=second)
    again = run_qmpsh(fresh.socket, stdin=recorded.read_text(), timeout=90)
    assert again.returncode == 0, again.stderr
    stopped(fresh)
    same_pivot(first, second)


def test_recording_never_writes_over_a_file(qemu, tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes\n")
    run = run_qmpsh("--record", str(mine), qemu.socket, stdin="query-status\n")
    assert run.returncode == 2
    assert run.stderr == f"qmpsh: cannot record to {mine}: File exists\n"
    assert mine.read_text() == "my notes\n"


def test_save_in_a_script_says_how_to_record(qemu, tmp_path):
    run = run_qmpsh(qemu.socket, stdin=f"query-status\n/save {tmp_path / 'x.qmp'}\n")
    assert run.returncode == 1
    assert run.stderr == "error: /save: a script keeps no record of itself; run it with --record FILE\n"
    assert not (tmp_path / "x.qmp").exists()


def test_a_run_that_cannot_connect_leaves_no_record_file(tmp_path):
    record = tmp_path / "r.qmp"
    run = run_qmpsh("--record", str(record), str(tmp_path / "nothing.sock"), stdin="query-status\n")
    assert run.returncode == 3
    assert not record.exists()


def test_a_record_keeps_the_connect_that_moved_the_session_and_a_rerun_moves_too(qemu_factory, tmp_path):
    """The lines after /connect went to another QEMU: the record says so with the /connect line itself."""
    first, second = workdirs(tmp_path)
    one, two = qemu_factory(workdir=first), qemu_factory(workdir=second)
    recorded = tmp_path / "two.qmp"
    saved = tmp_path / "saved.qmp"
    script = f"query-status\n/connect {two.socket}\ncont\n/save {saved}\n"
    assert run_qmpsh("--record", str(recorded), one.socket, stdin=script).returncode == 0
    body = [line for line in recorded.read_text().splitlines() if not line.startswith("#")]
    assert body == ["query-status", f"/connect {two.socket}", "cont"]
    # /save's header names where the session began, as --record's does, not where it is now.
    assert saved.read_text().splitlines()[0].endswith(f" at {one.socket}")
    assert recorded.read_text().splitlines()[0].endswith(f" at {one.socket}")
    again = run_qmpsh(one.socket, stdin=recorded.read_text() + "query-status\n")
    assert again.returncode == 0, again.stderr
    # The last query-status went to the second QEMU, which cont started: the first is still in prelaunch.
    assert json.loads(again.stdout.splitlines()[-1])["return"]["status"] == "running"
