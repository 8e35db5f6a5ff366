"""Capture what QEMU says during the live block operations document's flows, as test data.

The unit tests read these files to test qmpsh's pure modules (schema checking, completion's
wanted(), /tree's graph, /job's ending rules) without starting QEMU. Run it again against a newer
QEMU to refresh them:

    .venv/bin/python tests/data/capture.py            # writes tests/data/qemu/

It starts the document's QEMU (TCG, -S, a.qcow2 as node-A), builds the chain A <- B <- C <- D,
then takes the answers to the queries qmpsh reads: before, during and after a block-stream, and
the events of two jobs that reuse the id job0, as the document's jobs do.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests.conftest import qemu_img, qemu_io, seed_args, start_qemu  # noqa: E402
from tests.monitor import Monitor  # noqa: E402

OUT = HERE / "qemu"


def write(name: str, value: object) -> None:
    text = json.dumps(value, indent=1, sort_keys=True) + "\n"
    if name.endswith(".gz"):
        (OUT / name).write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        (OUT / name).write_text(text)


def graph(monitor: Monitor, stage: str) -> None:
    write(f"block-graph-{stage}.json", monitor.ok("x-debug-query-block-graph"))
    write(f"named-block-nodes-{stage}.json", monitor.ok("query-named-block-nodes", flat=True))
    write(f"block-{stage}.json", monitor.ok("query-block"))


def wait_for(monitor: Monitor, since: int, name: str, **data: object) -> None:
    """Until event ``name`` with ``data`` comes, counting events from ``since`` (job0 is used twice)."""
    deadline = time.monotonic() + 60
    while not any(e["event"] == name and all(e.get("data", {}).get(k) == v for k, v in data.items())
                  for e in monitor.events[since:]):
        assert time.monotonic() < deadline, f"no {name} {data}"
        monitor.execute("query-status")  # reads the events that came meanwhile


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "39M", cwd=work)
        qemu_io(work / "a.qcow2", "write -P 0x11 0 16M")
        vm = start_qemu(work, seed_args())
        try:
            with Monitor(vm.socket) as monitor:
                version = monitor.ok("query-version")
                write("version.json", version)
                write("qmp-schema.json.gz", monitor.ok("query-qmp-schema"))
                for base, top in ("AB", "BC", "CD"):
                    monitor.ok("blockdev-snapshot-sync", **{
                        "node-name": f"node-{base}", "snapshot-file": f"{top.lower()}.qcow2",
                        "snapshot-node-name": f"node-{top}", "format": "qcow2"})
                graph(monitor, "chain")

                monitor.events.clear()
                monitor.ok("block-stream", device="node-D", **{"job-id": "job0"}, speed=1024 * 1024)  # A's 16M
                wait_for(monitor, 0, "JOB_STATUS_CHANGE", id="job0", status="running")
                graph(monitor, "stream")
                write("jobs-stream.json", monitor.ok("query-jobs"))
                write("block-jobs-stream.json", monitor.ok("query-block-jobs"))
                monitor.ok("block-job-set-speed", device="job0", speed=0)
                wait_for(monitor, 0, "JOB_STATUS_CHANGE", id="job0", status="null")
                graph(monitor, "streamed")

                second = len(monitor.events)
                monitor.ok("drive-backup", device="node-D", target="e.qcow2", sync="full", format="qcow2",
                           **{"job-id": "job0"}, speed=1024 * 1024)
                wait_for(monitor, second, "JOB_STATUS_CHANGE", id="job0", status="running")
                monitor.ok("block-job-set-speed", device="job0", speed=0)
                wait_for(monitor, second, "JOB_STATUS_CHANGE", id="job0", status="null")
                write("events-job0-twice.json", monitor.events)
        finally:
            vm.stop()
    qemu = version["qemu"]
    print(f"wrote {OUT} from QEMU {qemu['major']}.{qemu['minor']}.{qemu['micro']}")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as err:
        sys.exit(f"capture: {err}")
