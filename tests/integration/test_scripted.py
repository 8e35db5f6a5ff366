"""The scripted-mode contract against real QEMU: JSON lines, exit statuses, flags."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import (REPO, free_port, json_lines, qemu_img, qemu_io_write, qmpsh_env, run_qmpsh, seed_args,
                            snapshot_sync)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_stdout_is_json_lines_in_wire_order(qemu, tmp_path):
    log = tmp_path / "traffic.jsonl"
    script = """query-status
blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2
block-stream device=node-B job-id=job0
/wait BLOCK_JOB_COMPLETED device=job0
query-block-jobs
"""
    result = run_qmpsh("-l", str(log), qemu.socket, stdin=script)
    assert result.returncode == 0, result.stderr
    out = json_lines(result.stdout)
    assert out[0]["return"]["status"] == "prelaunch"
    assert out[-1] == {"return": []}
    # The job's end comes between the stream's reply and the last reply, as QEMU sent it.
    replies = [i for i, o in enumerate(out) if "return" in o]
    (completed,) = [i for i, o in enumerate(out) if o.get("event") == "BLOCK_JOB_COMPLETED"]
    assert len(replies) == 4 and replies[2] < completed < replies[3], out
    assert out[completed]["data"]["device"] == "job0"
    # What was printed is exactly what was received after negotiation, in the same order.
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    received = [e["message"] for e in logged if e["direction"] == "received"][2:]  # greeting, capabilities
    # qmpsh's own queries (the schema, for checking arguments) are logged, not printed.
    received = [m for m in received if not str(m.get("id", "")).startswith("__qmp#")]
    for message in received:
        message.pop("id", None)
    assert received == out
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert logged[0]["direction"] == "received" and "QMP" in logged[0]["message"]
    assert all("time" in e for e in logged)


def test_verbose_prints_each_command_before_its_reply(qemu):
    result = run_qmpsh("-v", qemu.socket, stdin='query-status\n{"execute": "query-name", "id": "mine"}\n')
    assert json_lines(result.stdout) == [
        {"execute": "query-status"},
        {"return": {"status": "prelaunch", "singlestep": False, "running": False}},
        {"execute": "query-name", "id": "mine"},
        {"return": {}, "id": "mine"},
    ]


@pytest.mark.parametrize("kind", ["file", "pipe", "/dev/null"])
def test_every_kind_of_stdin_is_read_to_its_end(qemu, tmp_path, kind):
    """A file, a pipe, or a device that cannot be polled (/dev/null): all read, then exit 0."""
    script = tmp_path / "script.txt"
    script.write_text("query-status\nquery-name\n")
    argv = [sys.executable, "-m", "qmpsh", qemu.socket]
    if kind == "pipe":
        result = subprocess.run(argv, input=script.read_text(), capture_output=True, text=True, timeout=30,
                                env=qmpsh_env(), cwd=REPO)
    else:
        with open(script if kind == "file" else os.devnull) as stdin:
            result = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, timeout=30, env=qmpsh_env(),
                                    cwd=REPO)
    assert result.returncode == 0 and result.stderr == "", result
    assert len(json_lines(result.stdout)) == (0 if kind == "/dev/null" else 2), result.stdout


def test_pretty_indents(qemu):
    result = run_qmpsh("-p", qemu.socket, stdin="query-name\n")
    assert result.stdout == '{\n    "return": {}\n}\n'


def test_qmp_error_fails_the_run_and_says_where(qemu):
    result = run_qmpsh(qemu.socket, stdin="query-status\nblock-stream device=nope\nquery-name\n")
    assert result.returncode == 1
    out = json_lines(result.stdout)
    assert out[1]["error"]["class"] == "GenericError" and out[2] == {"return": {}}
    assert result.stderr.splitlines() == [  # one line: where, which command, and QEMU's own words
        "error: line 2: block-stream: GenericError: Cannot find device='nope' nor node-name='nope'"]


def test_parse_error_sends_nothing_and_fails(qemu):
    result = run_qmpsh("-v", qemu.socket, stdin="query-status\nstop oops\nquery-name\n")
    assert result.returncode == 1
    sent = [o for o in json_lines(result.stdout) if "execute" in o]
    assert [o["execute"] for o in sent] == ["query-status", "query-name"]
    assert result.stderr == "error: line 2, column 6: expected key=value, got 'oops'\n  stop oops\n       ^\n"


def test_exit_on_error_stops_at_the_first_failure(qemu):
    result = run_qmpsh("-e", "-v", qemu.socket, stdin="query-name\n!nope\nquery-status\nnope\nquery-status\n")
    assert result.returncode == 1
    assert [o.get("execute") for o in json_lines(result.stdout) if "execute" in o] == ["query-name", "nope"]
    result = run_qmpsh("-e", "-v", qemu.socket, stdin="query-name\nnope\nquery-status\n")  # caught before sending
    assert result.returncode == 1 and "unknown command 'nope'" in result.stderr
    assert [o.get("execute") for o in json_lines(result.stdout) if "execute" in o] == ["query-name"]


def test_unterminated_input_at_end_of_script_fails(qemu):
    result = run_qmpsh(qemu.socket, stdin='query-name\n{"execute": "query-status",\n')
    assert result.returncode == 1
    assert "unexpected end of input" in result.stderr
    assert json_lines(result.stdout) == [{"return": {}}]


def test_wait_timeout_fails(qemu):
    started = time.monotonic()
    result = run_qmpsh(qemu.socket, stdin="/wait DEVICE_DELETED device=nosuch timeout=0.5\nquery-name\n")
    assert result.returncode == 1
    assert time.monotonic() - started < 10
    assert "error: /wait: no DEVICE_DELETED device=nosuch within 0.5 s" in result.stderr
    assert json_lines(result.stdout) == [{"return": {}}]


def test_wait_for_an_event_or_data_key_qemu_does_not_have_fails_at_once(qemu):
    started = time.monotonic()
    script = ("/wait BLOCK_JOB_COMPLETE\n/wait BLOCK_JOB_COMPLETED devce=job0\n/wait STOP reason=x\n"
              "/wait DEVICE_DELETED devce.x=1\nquery-name\n")
    result = run_qmpsh(qemu.socket, stdin=script)
    assert result.returncode == 1
    assert time.monotonic() - started < 10  # not the 60 s each /wait waits by default
    assert result.stderr.splitlines() == [
        "error: /wait: unknown event 'BLOCK_JOB_COMPLETE' (did you mean 'BLOCK_JOB_COMPLETED' or "
        "'BLOCK_JOB_CANCELLED' or 'BLOCK_JOB_PENDING'?)",
        "error: /wait: BLOCK_JOB_COMPLETED has no data key 'devce' (did you mean 'device'?)",
        "error: /wait: STOP has no data key 'reason'",
        "error: /wait: DEVICE_DELETED has no data key 'devce' (did you mean 'device'?)",
    ]
    assert json_lines(result.stdout) == [{"return": {}}]


def test_wait_matches_data_and_counts_events_already_arrived(qemu):
    script = """cont
stop
cont
stop
/wait STOP
/wait RESUME
/wait RESUME
/wait STOP
/wait RESUME timeout=0.3
"""
    result = run_qmpsh(qemu.socket, stdin=script)
    # Two RESUMEs and two STOPs arrived before the first /wait; each is consumed once.
    assert result.returncode == 1
    assert result.stderr.strip() == "error: /wait: no RESUME within 0.3 s"


def test_quit_is_success_and_qemu_exits(qemu):
    result = run_qmpsh("-v", qemu.socket, stdin="quit\nquery-status\n")
    assert result.returncode == 0, result.stderr
    out = json_lines(result.stdout)
    assert out[0] == {"execute": "quit"} and {"return": {}} in out
    assert [o["data"]["reason"] for o in out if o.get("event") == "SHUTDOWN"] == ["host-qmp-quit"]
    assert "query-status" not in result.stdout  # nothing is sent after quit
    qemu.process.wait(timeout=10)


def test_qemu_killed_mid_session_exits_3(qemu):
    proc = subprocess.Popen([sys.executable, "-m", "qmpsh", qemu.socket], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=qmpsh_env())
    proc.stdin.write("query-status\n")
    proc.stdin.flush()
    assert "prelaunch" in proc.stdout.readline()
    qemu.kill()
    time.sleep(0.2)
    proc.stdin.write("query-name\n")
    proc.stdin.close()
    assert proc.wait(timeout=20) == 3
    stderr = proc.stderr.read()
    assert "connection to QEMU lost" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


# A stream that never ends by itself: 1 MiB in node-A streamed into node-B at 1 byte/s.
ENDLESS_JOB = qemu_io_write(0x11, 0, 1) + snapshot_sync("A", "B") + "block-stream device=node-B job-id=job0 speed=1\n"


@pytest.mark.parametrize(("setup", "line"), [
    pytest.param("", "/wait SHUTDOWN timeout=30", id="wait"),
    pytest.param("", "/wait SHUTDOWN timeout=0", id="wait-without-end"),
    pytest.param(ENDLESS_JOB, "/job job0", id="job"),
])
def test_qemu_killed_during_wait_or_job_exits_3_at_once(qemu, setup, line):
    proc = subprocess.Popen([sys.executable, "-m", "qmpsh", qemu.socket], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=qmpsh_env())
    proc.stdin.write(f"{setup}query-status\n{line}\nquery-name\n")
    proc.stdin.close()
    while "prelaunch" not in (reply := proc.stdout.readline()):  # then it runs the line, which waits
        assert reply, proc.stderr.read()
    qemu.kill()
    killed = time.monotonic()
    try:
        status = proc.wait(timeout=20)
    finally:
        proc.kill()
    assert time.monotonic() - killed < 5, f"{line} went on for {time.monotonic() - killed:.1f} s"
    stderr = proc.stderr.read()
    assert status == 3, stderr
    name = line.split()[0]
    assert re.fullmatch(rf"error: connection to QEMU lost during {name}: the server (closed|reset) the connection\n",
                        stderr), stderr
    assert "query-name" not in proc.stdout.read()


def test_missing_socket_is_one_line_exit_3(tmp_path):
    result = run_qmpsh(str(tmp_path / "nope.sock"), stdin="query-status\n")
    assert result.returncode == 3
    assert result.stderr == f"error: cannot connect to {tmp_path / 'nope.sock'}: No such file or directory\n"


def test_refused_tcp_is_one_line_exit_3():
    port = free_port()
    result = run_qmpsh(f"127.0.0.1:{port}", stdin="query-status\n")
    assert result.returncode == 3
    assert result.stderr == f"error: cannot connect to 127.0.0.1:{port}: Connection refused\n"


def test_no_address_is_a_usage_error():
    result = run_qmpsh(stdin="query-status\n")
    assert result.returncode == 2
    assert "no QMP server" in result.stderr
    no_traceback(result)


def test_unwritable_logfile_is_a_usage_error(qemu, tmp_path):
    result = run_qmpsh("-l", str(tmp_path / "no" / "such" / "dir.log"), qemu.socket, stdin="query-name\n")
    assert result.returncode == 2
    assert result.stderr.startswith("qmpsh: cannot open logfile")


def test_qmp_socket_environment_variable(qemu):
    result = run_qmpsh(stdin="query-name\n", env=qmpsh_env(QMP_SOCKET=qemu.socket))
    assert result.returncode == 0 and json_lines(result.stdout) == [{"return": {}}]


def test_host_port_address(qemu_factory, tmp_path):
    port = free_port()
    vm = qemu_factory(["-display", "none", "-M", "none", "-nodefaults", "-S",
                       "-qmp", f"tcp:127.0.0.1:{port},server=on,wait=off"])
    result = run_qmpsh(f"127.0.0.1:{port}", stdin="query-name\n")
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == [{"return": {}}]
    assert vm.alive()


def test_hmp_mode_prints_text(qemu):
    result = run_qmpsh("-H", qemu.socket, stdin="info status\n")
    assert result.returncode == 0
    assert result.stdout == "VM status: paused (prelaunch)\n"


def test_skip_negotiation(qemu):
    result = run_qmpsh("-N", qemu.socket, stdin="query-name\nqmp_capabilities\nquery-name\n")
    out = json_lines(result.stdout)
    assert out[0]["error"]["class"] == "CommandNotFound"  # not negotiated yet
    assert out[1:] == [{"return": {}}, {"return": {}}]
    assert result.returncode == 1


def test_quoted_values_and_dotted_keys_reach_qemu(qemu):
    qemu_img("create", "-q", "-f", "raw", "x.raw", "1M", cwd=qemu.dir)
    script = """human-monitor-command command-line="info status"
blockdev-add file.driver=file driver=raw node-name=rawnode file.filename=x.raw
query-named-block-nodes flat=true
"""
    result = run_qmpsh(qemu.socket, stdin=script)
    assert result.returncode == 0, result.stderr
    out = json_lines(result.stdout)
    assert out[0] == {"return": "VM status: paused (prelaunch)\r\n"}
    nodes = {n["node-name"]: n for n in out[2]["return"]}
    assert nodes["rawnode"]["drv"] == "raw"


def test_transaction_one_line_and_multi_line(qemu):
    script = """transaction( block-dirty-bitmap-add node=node-A name=bm0 )
transaction(
block-dirty-bitmap-add node=node-A name=bm1
block-dirty-bitmap-clear node=node-A name=bm0
)
query-named-block-nodes flat=true
"""
    result = run_qmpsh(qemu.socket, stdin=script)
    assert result.returncode == 0, result.stderr
    out = json_lines(result.stdout)
    assert out[:2] == [{"return": {}}, {"return": {}}]
    node_a = next(n for n in out[2]["return"] if n["node-name"] == "node-A")
    assert sorted(b["name"] for b in node_a["dirty-bitmaps"]) == ["bm0", "bm1"]


def test_pasted_replies_and_events_are_skipped(qemu):
    script = """{"return": {}}
{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}
<- { "return": {} }
-> { "execute": "query-name" }
"""
    result = run_qmpsh("-v", qemu.socket, stdin=script)
    assert result.returncode == 0
    assert json_lines(result.stdout) == [{"execute": "query-name"}, {"return": {}}]
    assert result.stderr.splitlines() == ["skipped pasted reply (line 1)", "skipped pasted event (line 2)",
                                          "skipped server line (line 3)"]


def test_colour(qemu):
    plain = run_qmpsh(qemu.socket, stdin="query-name\n")
    always = run_qmpsh("--color", "always", qemu.socket, stdin="query-name\n")
    assert "\x1b[" not in plain.stdout
    assert "\x1b[" in always.stdout
    assert json.loads(always.stdout.replace("\x1b[0m", "").replace("\x1b[34;1m", "")) == {"return": {}}


def test_launch_runs_the_seed_setup_and_cleans_up():
    result = run_qmpsh("--launch", stdin="query-named-block-nodes flat=true\nquery-status\n")
    assert result.returncode == 0, result.stderr
    nodes, status = json_lines(result.stdout)
    assert {n["node-name"] for n in nodes["return"]} >= {"node-A", "file"}
    assert status["return"]["status"] == "prelaunch"


def test_launch_workdir_is_kept(tmp_path):
    work = tmp_path / "work"
    result = run_qmpsh("--launch", "--workdir", str(work),
                       stdin="blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 "
                             "snapshot-node-name=node-B format=qcow2\n")
    assert result.returncode == 0, result.stderr
    assert (work / "a.qcow2").exists() and (work / "b.qcow2").exists()
    info = json.loads(qemu_img("info", "--output=json", "b.qcow2", cwd=work).stdout)
    assert info["backing-filename"] == "a.qcow2"


def test_launch_with_own_arguments():
    result = run_qmpsh("--launch", "--", "-M", "none", "-display", "none", "-nodefaults", "-name", "guest7",
                       stdin="query-name\n")
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == [{"return": {"name": "guest7"}}]


def test_launch_without_qemu_says_how_to_install():
    result = run_qmpsh("--launch", stdin="", env=qmpsh_env(QMPSH_QEMU="/nonexistent/qemu-system-x86_64"))
    assert result.returncode == 2
    assert "apt-get install qemu-system-x86 qemu-utils" in result.stderr
    no_traceback(result)


def test_seed_args_match_launch():
    from qmpsh.launch import seed_arguments

    assert seed_arguments() == seed_args()


@pytest.mark.parametrize("timeout", ["nan", "-1", "soon"])
def test_wait_with_a_timeout_that_is_no_time_fails_at_once(qemu, timeout):
    """NaN or a negative timeout waited without end, silently; "soon" was refused already."""
    result = run_qmpsh(qemu.socket, stdin=f"/wait SHUTDOWN timeout={timeout}\nquery-name\n", timeout=30)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: /wait: timeout must be a number of seconds (0: no end), not "), line
    assert line.endswith(timeout) or line.endswith(f"{timeout}'"), line
    assert json_lines(result.stdout) == [{"return": {}}]
