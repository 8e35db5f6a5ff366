"""``/save`` at a terminal: the document's block-stream done at the prompt, saved, then run as a
script against a fresh QEMU, which ends with the same chain and the same data."""

from __future__ import annotations

from tests.conftest import qemu_img, run_qmpsh
from tests.integration.test_export import workdirs
from tests.integration.test_seed_flows import Script, header_backing, stopped
from tests.interactive.ptyterm import CTRL_D, Terminal


def test_a_session_saved_at_the_prompt_runs_again_as_a_script(qemu_factory, tmp_path):
    first, second = workdirs(tmp_path)
    saved = tmp_path / "stream.qmp"
    vm = qemu_factory(workdir=first)
    term = Terminal(vm.socket)
    try:
        term.wait_prompt()
        term.paste(Script().chain().text)  # the document's chain, pasted as printed (prompts, JSON echoes)
        term.run("block-stream device=node-D job-id=job0", '{"return": {}}')
        term.wait_for(lambda: "BLOCK_JOB_COMPLETED" in term.plain(), "the stream to end")
        term.run("/job job0", "BLOCK_JOB_COMPLETED")  # its end again, as /job's answer
        term.run("block-job-cancel device=nojob", "DeviceNotActive")  # a failed line is not saved
        term.run(f"/save {saved}", "saved 9 lines")
        term.run(f"/save {saved}", "File exists")  # never over a file
        term.send(CTRL_D)
        assert term.wait_exit() == 0, term.dump()
    finally:
        term.close()
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("# qmpsh session, ") and lines[0].endswith(f" at {vm.socket}"), lines[0]
    body = [line for line in lines if not line.startswith("#")]
    assert body[-2:] == ["block-stream device=node-D job-id=job0", "/job job0"], body
    assert sum(line.startswith("blockdev-snapshot-sync ") for line in body) == 3, body
    assert not any("nojob" in line or line.startswith("/save") for line in body), body
    vm.stop()

    fresh = qemu_factory(workdir=second)
    again = run_qmpsh(fresh.socket, stdin=saved.read_text() + "quit\n", timeout=90)
    assert again.returncode == 0, again.stderr
    stopped(fresh)
    for where in (first, second):
        assert header_backing(where / "d.qcow2") is None  # streamed: standalone
    assert qemu_img("compare", str(first / "d.qcow2"), str(second / "d.qcow2")).returncode == 0
