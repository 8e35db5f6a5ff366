"""``--timeout`` counts from each request's send: time spent idle before it never counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import REPO, qmpsh_env


def test_a_pause_in_the_script_longer_than_the_timeout_fails_nothing(qemu):
    """``{ echo query-status; sleep 2; echo query-name; } | qmpsh --timeout 1 SOCK``"""
    qmpsh = subprocess.Popen([sys.executable, "-m", "qmpsh", "--timeout", "1", qemu.socket], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=qmpsh_env(), cwd=REPO)
    assert qmpsh.stdin is not None and qmpsh.stdout is not None
    qmpsh.stdin.write("query-status\n")
    qmpsh.stdin.flush()
    assert json.loads(qmpsh.stdout.readline())["return"]["status"] == "prelaunch"
    time.sleep(2)
    stdout, stderr = qmpsh.communicate("query-name\n", timeout=30)
    assert qmpsh.returncode == 0, stderr  # answered, not given up on (that would be exit 3)
    assert [json.loads(line) for line in stdout.splitlines()] == [{"return": {}}]
    assert stderr == ""
