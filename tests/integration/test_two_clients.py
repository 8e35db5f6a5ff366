"""Two clients on one QEMU: scripted qmpsh on the first QMP monitor runs a block job
flow with /wait while another client works the second monitor at the same time.

The other client (a plain socket in a thread of the test) keeps issuing
queries and dirty-bitmap commands all along, and steers the VM and qmpsh's
job: it resumes the VM, pauses the job, lifts its speed limit, resumes it,
and stops the VM once the job has completed. qmpsh must see the events the
other client caused, in its own output, wait on them, attribute none of the
other client's replies to itself, and exit 0.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import GUEST_DISK, REPO, qmpsh_env
from tests.monitor import Monitor


DEADLINE = 60.0  # the whole flow, qmpsh's run included; far below any test timeout


class OtherClient(threading.Thread):
    """Works the second monitor while qmpsh runs; records what it did."""

    def __init__(self, monitor: Monitor) -> None:
        super().__init__(daemon=True)
        self.monitor = monitor
        self.done = threading.Event()
        self.commands = 0
        self.steps: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.failure = err

    def _step(self, name: str, command: str, **arguments: object) -> None:
        self.monitor.ok(command, **arguments)
        self.steps.append(name)

    def _run(self) -> None:
        mon = self.monitor
        deadline = time.monotonic() + DEADLINE
        self._step("cont", "cont")
        n = 0
        while time.monotonic() < deadline:
            # Busy work all along, interleaved with qmpsh's commands on the other monitor.
            mon.ok("query-status")
            mon.ok("query-block-jobs")
            mon.ok("block-dirty-bitmap-add", node="node-A", name=f"other-{n}")
            mon.ok("block-dirty-bitmap-remove", node="node-A", name=f"other-{n}")
            self.commands += 4
            n += 1
            if "pause" not in self.steps and mon.saw("JOB_STATUS_CHANGE", id="job0", status="running"):
                self._step("pause", "block-job-pause", device="job0")
            if ("resume" not in self.steps and "pause" in self.steps
                    and mon.saw("JOB_STATUS_CHANGE", id="job0", status="paused")):
                self._step("set-speed", "block-job-set-speed", device="job0", speed=0)
                self._step("resume", "block-job-resume", device="job0")
            if "stop" not in self.steps and mon.saw("BLOCK_JOB_COMPLETED", device="job0"):
                self._step("stop", "stop")
            if "stop" in self.steps and self.done.is_set():
                return
            time.sleep(0.01)
        raise TimeoutError(f"the flow did not finish in {DEADLINE:g} s; steps: {self.steps}")


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """One line of qmpsh's stdout, or fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"qmpsh printed nothing in {timeout:g} s")
    return proc.stdout.readline().decode()


def test_qmpsh_runs_a_job_flow_while_another_client_uses_the_second_monitor(qemu_factory):
    vm = qemu_factory(None, extra_qmp=["qmp2.sock"])
    other = Monitor(vm.dir / "qmp2.sock")
    try:
        # 16 MiB in node-A, then B on top: streaming B copies them up, for seconds at 4 MiB/s.
        other.ok("human-monitor-command", **{"command-line": f'qemu-io -d {GUEST_DISK} "write -P 0x5a 0 16M"'})
        other.ok("blockdev-snapshot-sync", **{"node-name": "node-A", "snapshot-file": "b.qcow2",
                                              "snapshot-node-name": "node-B", "format": "qcow2"})
        other.events.clear()

        proc = subprocess.Popen([sys.executable, "-m", "qmpsh", "--timeout", "30", vm.socket], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=qmpsh_env(), cwd=REPO)
        assert proc.stdin is not None
        try:
            proc.stdin.write(b"query-status\n")
            proc.stdin.flush()
            first = read_line(proc, 20)  # qmpsh is connected: events from now on reach it too
            assert json.loads(first)["return"]["status"] == "prelaunch", first

            worker = OtherClient(other)
            worker.start()
            script = (b"/wait RESUME timeout=20\n"
                      b"block-stream device=node-B job-id=job0 speed=4M\n"
                      b"/wait BLOCK_JOB_COMPLETED device=job0 timeout=40\n"
                      b"/wait STOP timeout=20\n"
                      b"query-status\n"
                      b"query-block-jobs\n"
                      b"query-named-block-nodes flat=true\n")
            try:
                stdout, stderr = proc.communicate(script, timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
                pytest.fail(f"qmpsh hung\nstdout: {stdout.decode()[-2000:]}\nstderr: {stderr.decode()}")
            worker.done.set()
            worker.join(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert worker.failure is None, repr(worker.failure)
    finally:
        other.close()

    out, err = first + stdout.decode(), stderr.decode()
    assert proc.returncode == 0, (out[-3000:], err)
    assert err == "", err  # no notes: nothing of the other client's was taken for qmpsh's
    docs = [json.loads(line) for line in out.splitlines()]
    events = [d for d in docs if "event" in d]
    replies = [d for d in docs if "event" not in d]
    names = [e["event"] for e in events]

    # Events the other client caused are in qmpsh's output, in order with the job's own.
    assert "RESUME" in names and "STOP" in names, names
    paused = [i for i, e in enumerate(events) if e["event"] == "JOB_STATUS_CHANGE" and e["data"]["status"] == "paused"]
    completed = [i for i, e in enumerate(events) if e["event"] == "BLOCK_JOB_COMPLETED"]
    # (QEMU also pauses a job for a moment while a node drains, e.g. for the other client's bitmap commands.)
    assert paused and len(completed) == 1, [(e["event"], e.get("data")) for e in events]
    assert names.index("RESUME") < paused[0] < completed[0] < names.index("STOP"), names
    done = events[completed[0]]["data"]
    assert done["device"] == "job0" and done["offset"] == done["len"] and "error" not in done, done

    # qmpsh's replies are its own: one per command, in order, none of the other client's.
    assert len(replies) == 5, replies
    assert replies[0]["return"]["status"] == "prelaunch"
    assert replies[1] == {"return": {}}  # block-stream
    assert replies[2]["return"]["status"] == "paused" and replies[2]["return"]["running"] is False
    assert replies[3] == {"return": []}  # the job is gone
    nodes = {n["node-name"]: n for n in replies[4]["return"]}
    assert "backing-image" not in nodes["node-B"]["image"], nodes["node-B"]  # streamed: no backing file now
    assert all("id" not in r for r in replies)

    # The other client really was busy alongside.
    assert worker.steps == ["cont", "pause", "set-speed", "resume", "stop"], worker.steps
    # Its busy loop ran more than once (how many more times depends on the speed of the machine).
    assert worker.commands >= 4 * 2, worker.commands
