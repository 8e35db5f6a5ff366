"""qmpsh's own streams and files when they misbehave: a huge line on stdin, a closed or full
stdout, a reader that goes away, a full logfile, a config file that is a FIFO or a device.

Real processes, real pipes, the real /dev/full and /dev/zero. None of these is QEMU's fault,
so none of them may be reported as a lost connection (exit status 3).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, json_lines, qmpsh_env, run_qmpsh

QMPSH = [sys.executable, "-m", "qmpsh"]


@pytest.mark.parametrize("stream, redirection", [("stdout", ">&-"), ("stdin", "<&-"), ("stderr", "2>&-")])
def test_a_closed_standard_stream_is_one_line_and_a_usage_error(qemu, stream, redirection):
    """``qmpsh SOCK >&-``: refused before connecting (the next file opened would take the stream's place)."""
    result = subprocess.run(["bash", "-c", f'exec "$@" {redirection}', "qmpsh", *QMPSH, qemu.socket],
                            input="query-name\n", capture_output=True, text=True, timeout=60, env=qmpsh_env(),
                            cwd=REPO)
    assert result.returncode == 2
    assert result.stderr == ("" if stream == "stderr" else f"qmpsh: {stream} is closed\n")
    assert result.stdout == ""
