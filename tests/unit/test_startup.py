"""What qmpsh leaves to the interpreter's exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, qmpsh_env

# An exit hook registered before main() runs after main's own (atexit runs them last in, first out).
PROBE = """import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0))
from qmpsh.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_objects_are_frozen_before_the_exits_garbage_collection(tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "no.sock")], capture_output=True,
                            text=True, timeout=60, env=qmpsh_env(), cwd=REPO)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "frozen True\n"


ARGPARSE_PROBE = """import atexit, sys
atexit.register(lambda: print("argparse", "argparse" in sys.modules, file=sys.stderr))
from qmpsh.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("options, loaded", [((), False), (("-p",), True)])
def test_a_plain_scripted_run_does_without_argparse(qemu, options, loaded):
    """ADDRESS and a script on stdin, no config file: no parser is built (2 ms of a start-up)."""
    result = subprocess.run([sys.executable, "-c", ARGPARSE_PROBE, *options, qemu.socket], input="query-status\n",
                            capture_output=True, text=True, timeout=60, env=qmpsh_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert '"status": "prelaunch"' in result.stdout
    assert result.stderr == f"argparse {loaded}\n"
