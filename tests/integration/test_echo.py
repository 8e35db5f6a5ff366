"""``-x``/``--echo``: each script line on stderr before what it prints, as ``sh -x`` does."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, qmpsh_env

SCRIPT = 'query-status\n{"execute":\n "query-name"}\nblock-job-cancel device=nojob\n# a comment\nquery-kvm\n'


def test_each_line_comes_before_what_it_prints(qemu):
    run = subprocess.run([sys.executable, "-m", "qmpsh", "-x", qemu.socket], input=SCRIPT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=qmpsh_env(), cwd=REPO, timeout=60)
    assert run.returncode == 1, run.stdout
    shown = [line if line.startswith(("+ ", "error:")) else next(iter(json.loads(line)))
             for line in run.stdout.splitlines()]
    assert shown == ["+ query-status", "return",
                     '+ {"execute":', '+  "query-name"}', "return",
                     "+ block-job-cancel device=nojob", "error", "error: line 4: block-job-cancel: DeviceNotActive: "
                     "Block job 'nojob' not found",
                     "+ # a comment",
                     "+ query-kvm", "return"], run.stdout
