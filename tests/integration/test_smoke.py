import json

from tests.conftest import run_qmpsh


def test_query_status_scripted(qemu):
    result = run_qmpsh(qemu.socket, stdin="query-status\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["return"]["status"] == "prelaunch"
