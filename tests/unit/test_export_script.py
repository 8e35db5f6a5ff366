"""``--export python FILE`` of a script or a ``/save`` file: which lines become which statements, and
which lines are refused (FILE:LINE, exit status 2, nothing written)."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path

import pytest

from qmpsh.export import ExportError, export_file, script_program
from qmpsh.record import header
from tests.conftest import run_qmpsh


def steps_of(program: str) -> list[str]:
    body = program.split("async def steps(", 1)[1].split("\n\n\n", 1)[0].splitlines()[1:]
    return [line.strip() for line in body]


def test_a_script_becomes_one_statement_a_line_with_its_comments():
    script = """\
#!/usr/bin/env -S qmpsh -e
# the overlay
  /shell qemu-img create -f qcow2 b.qcow2 '1M'
{"execute": "blockdev-add",
 "arguments": {"driver": "null-co", "node-name": "n0"}}
!block-stream device=n0 \\
   job-id=job0 speed=0
/job job0
/job job1 timeout=5
/wait JOB_STATUS_CHANGE id=job0 status=null
/wait STOP timeout=0
$ qemu-img info b.qcow2
query-block
/quit
""".splitlines()
    program = script_program(script, "s.qmp")
    compile(program, "s.py", "exec")
    assert steps_of(program) == [
        "# the overlay",
        "subprocess.run(\"qemu-img create -f qcow2 b.qcow2 '1M'\", shell=True, check=True)",
        "await qmp.execute('blockdev-add', {'driver': 'null-co', 'node-name': 'n0'})",
        "await qmp.execute('block-stream', {'device': 'n0', 'job-id': 'job0', 'speed': 0})",
        "await events.job('job0')",
        "await events.job('job1', timeout=5.0)",
        "await events.expect('JOB_STATUS_CHANGE', {'id': 'job0', 'status': None})",
        "await events.expect('STOP', timeout=None)",
        "await qmp.execute('query-block')",
        "return  # /quit"]


def test_a_saved_files_key_value_lines_are_exact_and_kept():
    class Transport:
        domain = None
        label = "/run/vm.sock"
        version = None

    saved = [*header(Transport()), 'block-stream device=node-B job-id="1"', "/wait BLOCK_JOB_COMPLETED device=1"]
    assert steps_of(script_program(saved, "s.qmp"))[-2:] == [
        "await qmp.execute('block-stream', {'device': 'node-B', 'job-id': '1'})",
        "await events.expect('BLOCK_JOB_COMPLETED', {'device': 1})"]


@pytest.mark.parametrize("lines, why", [
    (["query-status", "block-stream device=node-B \\", "  job-id=job0"],
     "s.qmp:2: key=value arguments are sent as QEMU's schema coerces them, which --export cannot know: write the "
     "line as JSON or start it with ! (sent as typed), or export the --record file of a run"),
    (["transaction(", "  block-dirty-bitmap-add node=n name=b", ")"], "s.qmp:1: key=value arguments are sent as"),
    (["/events"], "s.qmp:1: /events has no place in a program (it exports /wait, /job, /shell and /quit)"),
    (["/connect vm2.sock"], "s.qmp:1: /connect: a program talks to one QEMU (export what ran before and after "
                            "this line as two files)"),
    (["/wait"], "s.qmp:1: usage: /wait EVENT [key=value ...] [timeout=SECONDS]"),
    (["/wait STOP timeout=soon"], "s.qmp:1: /wait: timeout must be a number of seconds (0: no end), not 'soon'"),
    (["/job"], "s.qmp:1: usage: /job JOB-ID [timeout=SECONDS]"),
    (["/shell"], "s.qmp:1: usage: /shell COMMAND"),
    (["/nosuch"], "s.qmp:1: unknown built-in '/nosuch'"),
    (['{"execute": "query-status", "id": 1}'], "s.qmp:1: QMPClient.execute cannot send this as it was sent"),
    (["query-status", '{"execute": "query-status",'], "s.qmp:2: unexpected end of input"),
])
def test_a_line_a_program_cannot_do_exactly_is_refused_naming_file_and_line(lines, why):
    with pytest.raises(ExportError) as raised:
        script_program(lines, "s.qmp")
    assert str(raised.value).startswith(why), raised.value


def test_a_comment_cannot_break_out_of_the_program():
    program = script_program(["# a\rimport os; os.system('true')", "# b\x0cc\u2028d"], "s.qmp")
    calls = [node.func for node in ast.walk(ast.parse(program)) if isinstance(node, ast.Call)]
    assert not any(isinstance(f, ast.Attribute) and f.attr == "system" for f in calls)
    assert steps_of(program) == ["# a\\rimport os; os.system('true')", "# b\\x0cc\\u2028d", "pass  # nothing to send"]


def test_the_kind_of_file_is_told_by_its_first_line(tmp_path: Path):
    log = tmp_path / "session.log"
    log.write_text(json.dumps({"time": "t", "direction": "sent",
                               "message": {"execute": "query-status", "id": "qmpsh-1"}}) + "\n")
    assert steps_of(export_file(str(log))) == ["await qmp.execute('query-status')"]
    script = tmp_path / "s.qmp"
    script.write_text('{"execute": "query-status"}\n')
    assert steps_of(export_file(str(script))) == ["await qmp.execute('query-status')"]


def test_the_script_can_come_on_stdin():
    exported = run_qmpsh("--export", "python", "-", stdin="# status\nquery-status\n")
    assert exported.returncode == 0, exported.stderr
    assert steps_of(exported.stdout) == ["# status", "await qmp.execute('query-status')"]


def test_the_command_line_refuses_in_one_line_and_writes_nothing(tmp_path: Path):
    script = tmp_path / "s.qmp"
    script.write_text("query-status\n/tree\n")
    refused = run_qmpsh("--export", "python", str(script))
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (f"qmpsh: {script}:2: /tree has no place in a program (it exports /wait, /job, "
                              "/shell and /quit)\n")


def test_the_programs_events_take_a_reused_job_ids_end_only_from_the_new_job():
    """The document runs every job as job0: the first job's end, not taken, must not end /job for the second."""
    namespace: dict[str, object] = {}
    exec(compile(script_program(["query-status"], "s.qmp"), "s.py", "exec"), namespace)  # defines, runs nothing

    def status(job: str, state: str) -> dict:
        return {"event": "JOB_STATUS_CHANGE", "data": {"id": job, "status": state}}

    class Listener:
        def __init__(self, events: list[dict]) -> None:
            self.queue: asyncio.Queue[dict] = asyncio.Queue()
            for event in events:
                self.queue.put_nowait(event)

        def empty(self) -> bool:
            return self.queue.empty()

        async def get(self) -> dict:
            return await self.queue.get()

    class Running:  # query-jobs: the second job0 runs
        async def execute(self, name: str) -> list[dict]:
            assert name == "query-jobs"
            return [{"id": "job0", "type": "stream", "status": "running"}]

    first = [status("job0", s) for s in ("created", "running", "waiting", "pending")]
    first += [{"event": "BLOCK_JOB_COMPLETED", "data": {"device": "job0", "type": "stream"}},
              status("job0", "concluded"), status("job0", "null"), status("job0", "created")]

    async def main() -> str:
        events = namespace["Events"](Running(), Listener(first))  # type: ignore[operator]
        with pytest.raises(TimeoutError):
            await events.job("job0", timeout=0.1)
        events.listener.queue.put_nowait({"event": "BLOCK_JOB_COMPLETED", "data": {"device": "job0", "error": "EIO"}})
        with pytest.raises(namespace["Failed"]) as failed:  # type: ignore[call-overload]
            await events.job("job0", timeout=1)
        return str(failed.value)

    assert asyncio.run(main()) == "job job0: EIO"
