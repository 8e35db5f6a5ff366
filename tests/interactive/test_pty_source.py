"""``/source FILE`` at the prompt: each line shown before what it prints, a stop at the first failure."""

from __future__ import annotations

from tests.interactive.ptyterm import TAB


def test_source_shows_each_line_and_stops_at_the_first_failure(qemu, terminal, tmp_path):
    script = tmp_path / "steps.qmp"
    script.write_text('# check the VM\nquery-status\n{"execute":\n "query-name"}\nblock-job-cancel device=nojob\n'
                      "query-kvm\n")
    term = terminal(qemu.socket)
    term.run(f"/source {script}", "/source: stopped at")
    text = term.plain()
    shown = text[text.index(f"/source {script}"):]
    order = ["+ # check the VM", "+ query-status", '"prelaunch"', '+ {"execute":', '+  "query-name"}',
             "+ block-job-cancel device=nojob", "DeviceNotActive",
             f"/source: stopped at {script}:5: block-job-cancel device=nojob"]
    at = [shown.index(part) for part in order]
    assert at == sorted(at), term.dump()
    assert "query-kvm" not in shown, term.dump()  # after the failure: not run


def test_tab_completes_the_file_to_source(qemu, terminal, tmp_path):
    (tmp_path / "stream-steps.qmp").write_text("query-status\n")
    term = terminal(qemu.socket)
    term.send(f"/source {tmp_path}/str{TAB}")
    term.wait_for(lambda: term.cursor_row.endswith(f"/source {tmp_path}/stream-steps.qmp"), "the file name completed")
