"""Watching block jobs in scripted qmpsh against real QEMU: /job, /jobs, /tree, /events, --events.

The jobs copy real data: 16 MiB written into the base layer (node-A) through
the guest's disk with HMP qemu-io, then a snapshot chain on top of it as the
live block operations document builds it ([A] <- [B] <- [C] <- [D]). A
stream or mirror only copies allocated data, so with ``speed=8M`` a job over
that chain takes about two seconds and reports progress in many steps.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import GUEST_DISK, REPO, json_lines, qemu_io_write, qmpsh_env, run_qmpsh, snapshot_sync


DEVICE = GUEST_DISK
MiB = 1024 * 1024


write, snapshot = qemu_io_write, snapshot_sync


# 16 MiB in node-A, then the document's chain with a little data in each overlay.
CHAIN = (write(0x11, 0, 16) + snapshot("A", "B") + write(0x22, 1, 1) + snapshot("B", "C") + write(0x33, 2, 1)
         + snapshot("C", "D") + write(0x44, 3, 1))
CHAIN_COMMANDS = 7


@dataclass
class Run:
    status: int
    docs: list[object]  # every stdout line, parsed
    stderr: str
    seconds: float

    @property
    def events(self) -> list[dict]:
        return [d for d in self.docs if isinstance(d, dict) and "event" in d]

    @property
    def replies(self) -> list[dict]:
        return [d for d in self.docs if isinstance(d, dict) and ("return" in d or "error" in d)]

    @property
    def lists(self) -> list[list]:
        """What /jobs and /tree printed (each one JSON list), in order."""
        return [d for d in self.docs if isinstance(d, list)]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def index(self, doc: object) -> int:
        return next(i for i, d in enumerate(self.docs) if d is doc)

    def show(self) -> str:
        return f"exit status {self.status}\nstderr:\n{self.stderr}\nstdout:\n" + "\n".join(map(json.dumps, self.docs))


def run(socket: str, script: str, *args: str, timeout: float = 60) -> Run:
    started = time.monotonic()
    result = run_qmpsh(*args, socket, stdin=script, timeout=timeout)
    seconds = time.monotonic() - started
    return Run(result.returncode, json_lines(result.stdout, f"stderr:\n{result.stderr}"), result.stderr, seconds)


def ok(outcome: Run, commands: int) -> None:
    """Exit 0, nothing on stderr, and every one of ``commands`` commands succeeded."""
    assert outcome.status == 0, outcome.show()
    assert outcome.stderr == "", outcome.show()
    assert len(outcome.replies) == commands, outcome.show()
    assert all("return" in r for r in outcome.replies), outcome.show()


def polls(log: Path, command: str = "query-jobs") -> list[tuple[float, object]]:
    """(time, reply) of every ``command`` qmpsh sent, from its --logfile."""
    sent: dict[object, str] = {}
    found = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        msg = entry["message"]
        if entry["direction"] == "sent" and "execute" in msg:
            sent[msg.get("id")] = msg["execute"]
        elif entry["direction"] == "received" and "id" in msg and sent.get(msg["id"]) == command:
            found.append((datetime.fromisoformat(entry["time"]).timestamp(), msg.get("return")))
    return found


def job_rows(reply: object, job_id: str) -> list[dict]:
    assert isinstance(reply, list)
    return [j for j in reply if j.get("id", j.get("device")) == job_id]


# -- /tree helpers ------------------------------------------------------------

def trees(doc: object) -> dict[str, dict]:
    """/tree's trees by their root's name."""
    assert isinstance(doc, list) and all("node-name" in t and "chain" in t for t in doc), doc
    return {t["node-name"]: t for t in doc}


def all_names(tree: dict) -> list[str]:
    return [tree["node-name"], *(n for c in tree.get("children", []) for n in all_names(c))]


def is_tree_output(doc: object) -> bool:
    return isinstance(doc, list) and bool(doc) and isinstance(doc[0], dict) and "chain" in doc[0]


def is_jobs_output(doc: object) -> bool:
    return isinstance(doc, list) and not is_tree_output(doc)


# ---------------------------------------------------------------------------
# /job follows a block-stream to completion; /jobs and /tree before, during, after


def test_job_follows_block_stream_to_completion(qemu, tmp_path):
    log = tmp_path / "qmp.log"
    script = (CHAIN + "/tree\n"
              + "block-stream device=node-D job-id=job0 speed=8M\n"
              + "/jobs\n/tree\n/job job0\n/jobs\n/tree\nquery-block-jobs\nquery-block\n")
    outcome = run(qemu.socket, script, "-l", str(log))
    ok(outcome, CHAIN_COMMANDS + 3)

    # The final event is on stdout (scripted: no bar), once, before what the next lines printed.
    (completed,) = [e for e in outcome.events if e["event"] == "BLOCK_JOB_COMPLETED"]
    assert completed["data"]["device"] == "job0" and completed["data"]["type"] == "stream", completed
    assert "error" not in completed["data"] and completed["data"]["offset"] == completed["data"]["len"]
    tree_before, tree_during, tree_after = [d for d in outcome.lists if is_tree_output(d)]
    jobs_during, jobs_after = [d for d in outcome.lists if is_jobs_output(d)]
    assert outcome.index(completed) < outcome.index(jobs_after), outcome.show()
    assert outcome.replies[-2] == {"return": []}, outcome.show()  # query-block-jobs after /job: it is over

    # /jobs while it runs: one row; afterwards: none.
    assert len(jobs_during) == 1, jobs_during
    row = jobs_during[0]
    assert set(row) == {"id", "type", "status", "progress", "speed"}, row
    assert (row["id"], row["type"], row["status"], row["speed"]) == ("job0", "stream", "running", 8 * MiB), row
    assert isinstance(row["progress"], (int, float)) and 0 <= row["progress"] < 100, row
    assert jobs_after == []

    # /tree: the chain before, during (the stream's copy-on-read filter is not part of it) and after.
    before = trees(tree_before)
    assert list(before) == [DEVICE], tree_before
    assert before[DEVICE]["chain"] == ["node-A", "node-B", "node-C", "node-D"]
    active = before[DEVICE]["children"][0]
    assert (active["node-name"], active["driver"], active["file"], active["edge"]) == (
        "node-D", "qcow2", "d.qcow2", "root"), active
    base = active["children"][0]["children"][0]["children"][0]
    assert (base["node-name"], base["driver"], base["file"], base["edge"]) == ("node-A", "qcow2", "a.qcow2", "backing")

    during = trees(tree_during)
    assert list(during) == [DEVICE], tree_during  # the job is not a device: no tree of its own
    assert during[DEVICE]["chain"] == ["node-A", "node-B", "node-C", "node-D"], tree_during
    assert during[DEVICE]["children"][0]["driver"] == "copy-on-read", tree_during
    assert "node-D" in all_names(during[DEVICE]), tree_during

    after = trees(tree_after)
    assert after[DEVICE]["chain"] == ["node-D"], tree_after
    assert all_names(after[DEVICE]) == [DEVICE, "node-D"], tree_after
    # node-A was added with -blockdev, so QEMU keeps it: a tree of its own; B and C are gone.
    assert set(after) == {DEVICE, "node-A"} and after["node-A"]["chain"] == ["node-A"], tree_after
    assert outcome.replies[-1]["return"][0]["inserted"]["node-name"] == "node-D"

    # Progress was followed in steps: /job polled query-jobs a few times a second (the first reply is
    # /jobs' own), and QEMU's current-progress grew from poll to poll while the job ran.
    running = [(t, job_rows(r, "job0")[0]) for t, r in polls(log) if job_rows(r, "job0")]
    followed = running[1:]
    progress = [row["current-progress"] for _, row in followed]
    total = followed[0][1]["total-progress"]
    assert len(followed) >= 5, running
    assert progress == sorted(progress) and len(set(progress)) >= 5, progress
    assert all(0 <= p < total for p in progress), (progress, total)
    assert followed[-1][0] - followed[0][0] >= 1.0, running  # the job took a while, and was watched
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(followed)]
    assert max(gaps) < 0.6, gaps


# ---------------------------------------------------------------------------
# /job follows a drive-mirror to ready; after block-job-cancel, to its end


def test_job_follows_drive_mirror_to_ready(qemu):
    script = (CHAIN + "drive-mirror device=node-D target=e.qcow2 format=qcow2 sync=full job-id=job0 speed=16M\n"
              + "/job job0\nquery-block-jobs\nblock-job-cancel device=job0\n/job job0\nquery-block-jobs\nquery-block\n")
    outcome = run(qemu.socket, script)
    ok(outcome, CHAIN_COMMANDS + 5)
    _mirror, jobs_at_ready, cancel, jobs_after, block = outcome.replies[CHAIN_COMMANDS:]

    # /job returned at BLOCK_JOB_READY: the next line saw a ready job that had copied everything.
    (ready,) = [e for e in outcome.events if e["event"] == "BLOCK_JOB_READY"]
    assert ready["data"]["device"] == "job0" and ready["data"]["type"] == "mirror"
    assert outcome.index(ready) < outcome.index(jobs_at_ready), outcome.show()
    (job,) = job_rows(jobs_at_ready["return"], "job0")
    assert job["ready"] is True and job["status"] == "ready" and job["offset"] == job["len"] > 0, job
    assert not [e for e in outcome.events if e["event"] == "BLOCK_JOB_COMPLETED"
                and outcome.index(e) < outcome.index(jobs_at_ready)], outcome.show()

    # block-job-cancel of a ready mirror completes it without pivoting; /job followed it to that end.
    (completed,) = [e for e in outcome.events if e["event"] == "BLOCK_JOB_COMPLETED"]
    assert "error" not in completed["data"], completed
    assert outcome.index(cancel) < outcome.index(completed) < outcome.index(jobs_after), outcome.show()
    assert jobs_after["return"] == []
    assert block["return"][0]["inserted"]["node-name"] == "node-D"
    assert (qemu.dir / "e.qcow2").is_file()


# ---------------------------------------------------------------------------
# a job that fails


FAILING_TARGET = ('blockdev-add driver=blkdebug node-name=broken image={"driver":"null-co","size":40894464} '
                  'inject-error=[{"event":"pwritev","errno":5}]\n')


def test_job_that_fails_exits_1_with_qemus_error(qemu):
    script = (write(0x11, 0, 4) + FAILING_TARGET
              + "blockdev-mirror device=node-A target=broken sync=full job-id=job0 auto-dismiss=false\n"
              + "/job job0\n/jobs\n"
              + "query-status\n/job job0 timeout=10\n"  # again, once its events have left the window
              + "job-dismiss id=job0\n/jobs\n")
    outcome = run(qemu.socket, script)
    assert outcome.status == 1, outcome.show()
    # Every command ran (the failure did not stop the script) and succeeded.
    assert [("return" in r) for r in outcome.replies] == [True] * 5, outcome.show()

    (completed,) = [e for e in outcome.events if e["event"] == "BLOCK_JOB_COMPLETED"]
    qemu_error = completed["data"]["error"]
    assert qemu_error == "Input/output error", completed  # the injected EIO, in QEMU's words
    failed = [line for line in outcome.stderr.splitlines() if line.startswith("error: /job:")]
    assert failed == [f"error: /job: job0 failed: {qemu_error}"] * 2, outcome.stderr
    assert "within" not in outcome.stderr, outcome.stderr  # the second /job did not wait for its timeout
    assert outcome.seconds < 8, outcome.show()

    # /jobs shows the concluded job with QEMU's error until it is dismissed.
    concluded, dismissed = outcome.lists
    assert len(concluded) == 1, concluded
    progress = concluded[0].pop("progress")  # how far it got before the EIO: any percentage
    assert isinstance(progress, (int, float)) and 0 <= progress <= 100, progress
    assert concluded == [{"id": "job0", "type": "mirror", "status": "concluded", "speed": 0, "error": qemu_error}]
    assert dismissed == []


def test_job_found_concluded_after_its_event_was_taken(qemu):
    """A job (auto-dismiss=false) whose final events left the window (a command after a /wait): /job
    sees it concluded by polling instead of waiting for an event that already came."""
    script = (write(0x11, 0, 1) + snapshot("A", "B")
              + "block-stream device=node-B job-id=job0 auto-dismiss=false\n"
              + "/wait BLOCK_JOB_COMPLETED device=job0\nquery-status\n/job job0 timeout=10\n")
    outcome = run(qemu.socket, script)
    ok(outcome, 4)
    assert outcome.names()[-2:] == ["BLOCK_JOB_COMPLETED", "JOB_STATUS_CHANGE"], outcome.show()
    assert outcome.seconds < 8, outcome.show()


def test_job_on_unknown_id_fails_fast(qemu):
    outcome = run(qemu.socket, "/job nosuch\nquery-status\n", timeout=20)
    assert outcome.status == 1, outcome.show()
    assert outcome.stderr.strip() == "error: /job: no job 'nosuch' (see /jobs)", outcome.show()
    assert len(outcome.replies) == 1 and outcome.replies[0]["return"]["status"] == "prelaunch", outcome.show()
    assert outcome.seconds < 5, outcome.show()


def test_job_timeout_fails_and_the_job_goes_on(qemu, tmp_path):
    log = tmp_path / "qmp.log"
    script = (write(0x11, 0, 16) + snapshot("A", "B")
              + "block-stream device=node-B job-id=job0 speed=2M\n"
              + "/job job0 timeout=0.5\nquery-block-jobs\nblock-job-cancel device=job0\n"
              + "/wait BLOCK_JOB_CANCELLED device=job0 timeout=10\n")
    outcome = run(qemu.socket, script, "-l", str(log))
    assert outcome.status == 1, outcome.show()
    assert outcome.stderr.strip() == "error: /job: job0 not ready or concluded within 0.5 s; it goes on", outcome.show()
    stream, jobs, cancel = outcome.replies[2:]
    assert "return" in stream and "return" in cancel, outcome.show()
    (job,) = job_rows(jobs["return"], "job0")
    assert job["status"] == "running" and 0 < job["offset"] < job["len"], job  # it went on
    assert [e["event"] for e in outcome.events if e["event"].startswith("BLOCK_JOB")] == ["BLOCK_JOB_CANCELLED"]
    # It waited about the half second it was given.
    first_poll = polls(log)[0][0]
    after_timeout = polls(log, "query-block-jobs")[0][0]
    assert 0.45 <= after_timeout - first_poll < 2.0, after_timeout - first_poll


# ---------------------------------------------------------------------------
# a job id used again: the document runs every job as job0


class Piped:
    """Scripted qmpsh fed line by line, its stdout read as it comes: a user who pipes in a command,
    watches its events go by, then pipes in the next."""

    def __init__(self, socket: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "qmpsh", socket], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=qmpsh_env(),
                                     cwd=REPO)
        self.docs: list[dict] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def until(self, wanted: Callable[[dict], bool], what: str, timeout: float = 30) -> dict:
        """Read stdout up to the first document ``wanted`` accepts; return it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no {what} within {timeout:g} s; so far: {self.docs}")
            assert line is not None, f"qmpsh exited before {what}: {self.docs}"
            self.docs.append(json.loads(line))
            if wanted(self.docs[-1]):
                return self.docs[-1]

    def finish(self) -> tuple[int, str]:
        """Close stdin; the exit status and stderr (qmpsh is killed if it has not ended in 30 s)."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self.proc.stderr.read()


def completed(kind: str) -> Callable[[dict], bool]:
    return lambda doc: doc.get("event") == "BLOCK_JOB_COMPLETED" and doc["data"]["type"] == kind


def is_jobs_reply(doc: dict) -> bool:
    return isinstance(doc.get("return"), list)


def test_job_and_wait_ignore_the_events_of_an_earlier_job_with_the_same_id(qemu):
    """The document's jobs, all job0: each stream is watched to its end (no /wait, no /job), then a
    backup reuses job0. /wait and /job must end at the backup's completion, not at the stream's."""
    piped = Piped(qemu.socket)
    try:
        piped.send(CHAIN)
        # Case-3: intermediate streaming, [A] <- [C] <- [D].
        piped.send("(QEMU) block-stream device=node-C base-node=node-A job-id=job0\n")
        piped.until(completed("stream"), "the stream's end")
        piped.send("(QEMU) drive-backup device=node-D sync=full target=e.qcow2 job-id=job0 speed=16M\n"
                   "/wait BLOCK_JOB_COMPLETED device=job0\nquery-block-jobs\n")
        jobs = piped.until(is_jobs_reply, "the reply to query-block-jobs")
        assert jobs == {"return": []}, piped.docs  # the backup had ended when /wait returned
        assert [d for d in piped.docs if completed("backup")(d)], piped.docs

        # Case-2: [A] <- [D]; then a backup again, followed with /job.
        piped.send("(QEMU) block-stream device=node-D base-node=node-A job-id=job0\n")
        piped.until(completed("stream"), "the second stream's end")
        start = len(piped.docs)
        piped.send("(QEMU) drive-backup device=node-D sync=full target=f.qcow2 job-id=job0 speed=16M\n"
                   "/job job0\nquery-block-jobs\n")
        jobs = piped.until(is_jobs_reply, "the reply to query-block-jobs")
        assert jobs == {"return": []}, piped.docs[start:]  # the backup had ended when /job returned
        assert [d for d in piped.docs[start:] if completed("backup")(d)], piped.docs[start:]
    finally:
        status, stderr = piped.finish()
    assert status == 0 and stderr == "", (status, stderr, piped.docs)


def test_help_for_wait_and_job_states_the_rule_for_a_reused_job_id(qemu):
    result = run_qmpsh(qemu.socket, stdin="/help /wait\n/help /job\n/help /jbo\n")
    assert result.returncode == 1 and result.stdout == "", result.stderr
    wait_help, rest = result.stderr.split("/job JOB-ID", 1)
    assert wait_help.startswith("/wait EVENT [key=value ...] [timeout=SECONDS]: wait for an event"), wait_help
    assert "counts only if it came after that job was created" in " ".join(wait_help.split()), wait_help
    assert "the end of an earlier job with the same id never ends it" in " ".join(rest.split()), rest
    assert rest.rstrip().endswith("error: /help: no built-in /jbo (did you mean '/job' or '/jobs'?)"), rest


# ---------------------------------------------------------------------------
# /events and --events


def test_events_only_and_hide_change_what_prints(qemu):
    script = ("cont\nstop\n"
              "/events only STOP\ncont\nstop\n"
              "/events hide STOP\ncont\nstop\n/wait STOP timeout=5\n"  # hidden, yet /wait sees it
              "/events all\ncont\n/events\n")
    outcome = run(qemu.socket, script)
    assert outcome.status == 0, outcome.show()
    assert all("return" in r for r in outcome.replies) and len(outcome.replies) == 7, outcome.show()
    last_reply = outcome.index(outcome.replies[-1])
    inline = [e["event"] for e in outcome.events if outcome.index(e) <= last_reply]
    listed = [e for e in outcome.events if outcome.index(e) > last_reply]
    assert inline == ["RESUME", "STOP", "STOP", "RESUME", "RESUME"], outcome.show()
    # /events lists every recent event, the hidden ones too, in order, as they came.
    assert [e["event"] for e in listed] == ["RESUME", "STOP", "RESUME", "STOP", "RESUME", "STOP", "RESUME"]
    assert [e["timestamp"] for e in listed] == sorted((e["timestamp"] for e in listed),
                                                      key=lambda t: (t["seconds"], t["microseconds"]))
    notes = outcome.stderr.splitlines()
    assert notes == ["printing inline: only:STOP", "printing inline: hide:STOP", "printing inline: all",
                     "7 events kept; printing inline: all"], outcome.stderr


def test_events_option_hides_job_status_change(qemu):
    script = (write(0x11, 0, 1) + snapshot("A", "B")
              + "block-stream device=node-B job-id=job0\n"
              + "/wait JOB_STATUS_CHANGE id=job0 status=concluded timeout=10\n"
              + "/job job0\n/events\n")
    outcome = run(qemu.socket, script, "--events", "hide:JOB_STATUS_CHANGE")
    assert outcome.status == 0, outcome.show()
    assert len(outcome.replies) == 3, outcome.show()
    # Inline, before /events: the job's completion, none of its status changes.
    inline = outcome.names()[:outcome.names().index("BLOCK_JOB_COMPLETED") + 1]
    assert inline == ["BLOCK_JOB_COMPLETED"], outcome.show()
    # /events lists them all: created, running, waiting, pending, concluded, null and the completion.
    listed = outcome.events[1:]
    assert [e["event"] for e in listed].count("BLOCK_JOB_COMPLETED") == 1, outcome.show()
    assert [e["data"]["status"] for e in listed if e["event"] == "JOB_STATUS_CHANGE"] == [
        "created", "running", "waiting", "pending", "concluded", "null"], outcome.show()
    assert outcome.stderr.strip().endswith("printing inline: hide:JOB_STATUS_CHANGE"), outcome.stderr


@pytest.mark.parametrize("spec", ["bogus", "only:", "hide", "some:STOP"])
def test_events_option_with_a_bad_spec_is_a_usage_error(spec, tmp_path):
    result = run_qmpsh("--events", spec, str(tmp_path / "no-such-socket"), timeout=20)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "--events" in result.stderr and result.stdout == "", result.stderr
    assert "cannot connect" not in result.stderr
