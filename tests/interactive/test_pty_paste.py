"""Pasting the live block operations document at the prompt: its prompts are not doubled, and its
shell lines are skipped with the /shell line that runs them."""

from __future__ import annotations

from tests.interactive.ptyterm import Terminal


def test_a_pasted_prompt_is_not_shown_twice(qemu, terminal):
    term: Terminal = terminal(qemu.socket)
    term.paste("(QEMU) query-status\n")
    term.wait_text('"prelaunch"')
    term.wait_prompt()
    assert term.rows_with("(QEMU) query-status"), term.dump()
    assert "(QEMU) (QEMU)" not in term.plain(), term.dump()


def test_a_pasted_shell_line_is_skipped_and_shell_runs_it_beside_the_vm(tmp_path):
    """The document's "$ qemu-img create" step, then its blockdev-add of the new image, at --launch."""
    work = tmp_path / "work"
    term = Terminal(None, "--launch", "--workdir", str(work))
    try:
        term.wait_prompt()
        term.paste("$ qemu-img create -f qcow2 e.qcow2 39M\n")
        term.wait_text("skipped shell command: '/shell qemu-img create -f qcow2 e.qcow2 39M' runs it")
        assert not (work / "e.qcow2").exists()
        term.run("/shell qemu-img create -f qcow2 e.qcow2 39M", "Formatting 'e.qcow2'")
        term.run('blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}',
                 '{"return": {}}')
        assert (work / "e.qcow2").exists()
        assert "error" not in term.plain(), term.dump()
    finally:
        term.close()
