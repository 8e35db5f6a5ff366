"""qmpsh's own streams and files when they misbehave: a huge line on stdin, a closed or full
stdout, a reader that goes away, a full logfile, a config file that is a FIFO or a device.

Real processes, real pipes, the real /dev/full and /dev/zero. None of these is QEMU's fault,
so none of them may be reported as a lost connection (exit status 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO, json_lines, qmpsh_env, run_qmpsh

QMPSH = [sys.executable, "-m", "qmpsh"]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_a_line_over_64_mib_through_a_pipe_fails_alone(qemu):
    """The line is not run (QEMU refuses JSON tokens over 64 MiB anyway); the lines after it are."""
    script = "query-name\n" + "query-status x=" + "a" * (64 * 1024 * 1024) + "\nquery-name\n"
    result = run_qmpsh(qemu.socket, stdin=script)
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr == "error: line 2: longer than 64 MiB: not run\n"
    assert json_lines(result.stdout) == [{"return": {}}, {"return": {}}]


def test_a_line_over_64_mib_in_a_file_fails_the_same_way(qemu, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("query-status x=" + "a" * (64 * 1024 * 1024 + 1) + "\nquery-name\n")
    with open(script) as stdin:
        result = subprocess.run([*QMPSH, qemu.socket], stdin=stdin, capture_output=True, text=True, timeout=120,
                                env=qmpsh_env(), cwd=REPO)
    assert result.returncode == 1
    assert result.stderr == "error: line 1: longer than 64 MiB: not run\n"
    assert json_lines(result.stdout) == [{"return": {}}]


@pytest.mark.parametrize("stream, redirection", [("stdout", ">&-"), ("stdin", "<&-"), ("stderr", "2>&-")])
def test_a_closed_standard_stream_is_one_line_and_a_usage_error(qemu, stream, redirection):
    """``qmpsh SOCK >&-``: refused before connecting (the next file opened would take the stream's place)."""
    result = subprocess.run(["bash", "-c", f'exec "$@" {redirection}', "qmpsh", *QMPSH, qemu.socket],
                            input="query-name\n", capture_output=True, text=True, timeout=60, env=qmpsh_env(),
                            cwd=REPO)
    assert result.returncode == 2
    assert result.stderr == ("" if stream == "stderr" else f"qmpsh: {stream} is closed\n")
    assert result.stdout == ""


def test_a_reader_that_goes_away_stops_qmpsh_quietly(qemu):
    """``qmpsh SOCK < script | head -1``: quiet, and 141 as for a program stopped by SIGPIPE (cat, jq)."""
    script = "query-qmp-schema\n" * 20  # megabytes: far more than a pipe holds once head has gone
    shell = 'printf "%s" "$SCRIPT" | "$@" | head -1 >/dev/null; echo "${PIPESTATUS[1]}"'
    result = subprocess.run(["bash", "-c", shell, "qmpsh", *QMPSH, qemu.socket], capture_output=True, text=True,
                            timeout=60, env=qmpsh_env(SCRIPT=script), cwd=REPO)
    assert result.stdout == "141\n"
    assert result.stderr == ""
    assert qemu.alive()


def test_a_full_stdout_is_one_line_not_a_lost_connection(qemu):
    with open("/dev/full", "w") as full:
        result = subprocess.run([*QMPSH, qemu.socket], input="query-name\nquery-status\n", stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=60, env=qmpsh_env(), cwd=REPO)
    assert result.returncode == 2
    assert result.stderr == "error: stdout: No space left on device\n"


def test_a_full_logfile_says_why_and_is_a_usage_error(qemu):
    """Like tee: said at once, the run goes on without the log, and the exit status says it failed."""
    result = run_qmpsh("-l", "/dev/full", qemu.socket, stdin="query-name\nquery-status\n")
    no_traceback(result)
    assert result.returncode == 2
    assert result.stderr == "error: cannot write logfile /dev/full: No space left on device (nothing more is logged)\n"
    assert json_lines(result.stdout)[0] == {"return": {}}


def test_config_that_is_a_fifo_or_a_device_is_refused(tmp_path):
    """Opening a FIFO waits for a writer and /dev/zero never ends: both hung qmpsh at start."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        result = run_qmpsh(str(tmp_path / "nope.sock"), stdin="query-name\n", timeout=20,
                           env=qmpsh_env(QMPSH_CONFIG=str(path)))
        assert result.returncode == 2
        assert result.stderr == f"qmpsh: {path}: cannot read the config file: not a regular file\n"


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a=" * 5000 + "1" + "}" * 5000])
def test_deeply_nested_config_is_one_line(tmp_path, value):
    config = tmp_path / "config.toml"
    config.write_text(f"pretty = true\nx = {value}\n")
    result = run_qmpsh(str(tmp_path / "nope.sock"), stdin="", env=qmpsh_env(QMPSH_CONFIG=str(config)))
    assert result.returncode == 2
    assert result.stderr == f"qmpsh: {config}: not valid TOML: nested too deeply\n"


def test_timeout_nan_is_a_usage_error_and_inf_waits_forever(qemu):
    for text in ("nan", "NaN", "-nan"):
        result = run_qmpsh(f"--timeout={text}", qemu.socket, stdin="query-name\n")
        assert result.returncode == 2, text
        assert result.stderr.splitlines()[-1] == f"qmpsh: error: argument --timeout: not a number of seconds: {text!r}"
    result = run_qmpsh("--timeout", "inf", qemu.socket, stdin="query-name\n")
    assert result.returncode == 0 and json_lines(result.stdout) == [{"return": {}}], result.stderr


def test_history_size_too_large_is_a_usage_error(tmp_path):
    result = run_qmpsh("--history-size", "99999999999999999999", str(tmp_path / "nope.sock"), stdin="")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (f"qmpsh: error: argument --history-size: too large: at most "
                                              f"{sys.maxsize}")


def test_a_logfile_that_is_a_fifo_nothing_reads_is_one_line_not_a_hang(tmp_path):
    """Opening a FIFO for writing waits for a reader: qmpsh hung at start, saying nothing."""
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    result = run_qmpsh("-l", str(fifo), str(tmp_path / "nope.sock"), stdin="query-name\n", timeout=20)
    assert result.returncode == 2
    assert result.stderr == f"qmpsh: cannot open logfile {fifo}: a FIFO that nothing reads (start its reader first)\n"


def test_a_logfile_that_is_a_fifo_with_a_reader_gets_every_message(qemu, tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # there before qmpsh starts
    os.set_blocking(reader, True)
    writer = os.open(fifo, os.O_WRONLY)  # the reader sees no end of file until qmpsh has written
    logged = bytearray()

    def read() -> None:
        while chunk := os.read(reader, 1 << 16):
            logged.extend(chunk)

    reading = threading.Thread(target=read)
    reading.start()
    try:
        result = run_qmpsh("-l", str(fifo), qemu.socket, stdin="query-name\n")
    finally:
        os.close(writer)
        reading.join(timeout=30)
        os.close(reader)
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in logged.decode().splitlines()]
    assert [m["message"]["execute"] for m in messages if m["direction"] == "sent"][-1] == "query-name"
