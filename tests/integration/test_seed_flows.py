"""The live block operations document's flows, pasted into scripted qmpsh against real QEMU.

Every flow builds the document's chain [A] <- [B] <- [C] <- [D] with the
document's own ``(QEMU) blockdev-snapshot-sync`` lines (the first one with
its multi-line JSON echo, which must run once), writes distinct data into
each layer as it becomes the active one, runs one block job the way the
document does, then checks three things:

* qmpsh's contract: exit status, every stdout line is JSON, one reply per
  command sent (a pasted JSON echo or reply is skipped, never sent);
* the backing chain QEMU reports (``query-named-block-nodes``) and the one
  written in the image headers;
* the data, with ``qemu-img compare`` against raw reference images built
  independently with the ``qemu-io`` binary (QEMU is quit first: it holds
  the images' write lock).

Layer data (offsets and lengths in MiB); later layers partly overwrite
earlier ones, so every flow leaves a different set of data in each file:

    A: 0x11 at [0, 4)   B: 0x22 at [1, 3)   C: 0x33 at [2, 4)   D: 0x44 at [3, 5)
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (GUEST_DISK, QEMU_IMG, free_port, json_lines, qemu_img, qemu_io, qemu_io_write, run_qmpsh,
                            seed_args)

SIZE = "39M"

# layer -> (pattern, offset MiB, length MiB)
WRITES = {"A": (0x11, 0, 4), "B": (0x22, 1, 2), "C": (0x33, 2, 2), "D": (0x44, 3, 2)}

# Layers are written through the guest's disk (GUEST_DISK): HMP qemu-io then writes through the
# device's own BlockBackend, i.e. into whatever node is the active layer; a node name (qemu-io
# node-B ...) would need a second writer, which virtio-blk does not share.


# -- the document's text, as printed ------------------------------------------

SNAPSHOT_B = """\
(QEMU) blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2
{
    "execute": "blockdev-snapshot-sync",
    "arguments": {
        "node-name": "node-A",
        "snapshot-file": "b.qcow2",
        "format": "qcow2",
        "snapshot-node-name": "node-B"
    }
}
"""
SNAPSHOT_C = ("(QEMU) blockdev-snapshot-sync node-name=node-B snapshot-file=c.qcow2 "
              "snapshot-node-name=node-C format=qcow2\n")
SNAPSHOT_D = ("(QEMU) blockdev-snapshot-sync node-name=node-C snapshot-file=d.qcow2 "
              "snapshot-node-name=node-D format=qcow2\n")

QUERY_BLOCK_JOBS = """\
(QEMU) query-block-jobs
{
    "execute": "query-block-jobs",
    "arguments": {}
}
"""
# The same, with the reply the document shows after it (an active commit that is ready).
QUERY_BLOCK_JOBS_WITH_REPLY = QUERY_BLOCK_JOBS + """\
{
    "return": [
        {
            "busy": false,
            "type": "commit",
            "len": 1376256,
            "paused": false,
            "ready": true,
            "io-status": "ok",
            "offset": 1376256,
            "device": "job0",
            "speed": 0
        }
    ]
}
"""
BLOCK_JOB_COMPLETE = """\
(QEMU) block-job-complete device=job0
{
    "execute": "block-job-complete",
    "arguments": {
        "device": "job0"
    }
}
{
    "return": {}
}
"""
# Indented as in the document's numbered list.
BLOCK_JOB_CANCEL = """\
    (QEMU) block-job-cancel device=job0
    {
        "execute": "block-job-cancel",
        "arguments": {
            "device": "job0"
        }
    }
"""
BLOCKDEV_ADD_E = """\
(QEMU) blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}
{
    "execute": "blockdev-add",
    "arguments": {
        "node-name": "node-E",
        "driver": "qcow2",
        "file": {
            "driver": "file",
            "filename": "e.qcow2"
        }
    }
}
"""
QUIT = """\
(QEMU) quit
{
    "execute": "quit",
    "arguments": {}
}
"""


# -- reference data ------------------------------------------------------------

class References:
    """Raw 39M images holding the writes of some layers, applied in chain order."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.made: dict[str, Path] = {}

    def __call__(self, layers: str) -> Path:
        if layers not in self.made:
            path = self.where / f"ref-{layers or 'empty'}.raw"
            qemu_img("create", "-q", "-f", "raw", str(path), SIZE)
            if layers:
                qemu_io(path, *(f"write -P {p:#x} {o}M {n}M" for p, o, n in (WRITES[layer] for layer in layers)),
                        fmt="raw")
            self.made[layers] = path
        return self.made[layers]


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(tmp_path_factory.mktemp("refs"))


def layer_only(image: Path) -> str:
    """A filename that opens ``image`` without its backing file: only the layer's own data."""
    return "json:" + json.dumps({"driver": "qcow2", "backing": None,
                                 "file": {"driver": "file", "filename": str(image)}})


def assert_same_data(reference: Path, image: Path | str, what: str) -> None:
    result = subprocess.run([QEMU_IMG, "compare", str(reference), str(image)], capture_output=True, text=True)
    assert result.returncode == 0, f"{what}: {result.stdout}{result.stderr}"
    assert "Images are identical." in result.stdout


def check_layers(workdir: Path, ref: References, full: dict[str, str], own: dict[str, str]) -> None:
    """``full``: file -> layers its whole chain must show; ``own``: file -> layers in the file itself."""
    for name, layers in full.items():
        assert_same_data(ref(layers), workdir / name, f"{name} (with its backing chain) should hold {layers}")
    for name, layers in own.items():
        assert_same_data(ref(layers), layer_only(workdir / name), f"{name} itself should hold {layers}")


def header_backing(image: Path) -> str | None:
    """The backing file recorded in a qcow2 header (None: standalone)."""
    info = json.loads(qemu_img("info", "--output=json", str(image)).stdout)
    return info.get("backing-filename")


# -- running qmpsh ---------------------------------------------------------------

@dataclass
class Script:
    """Input for one scripted qmpsh run, and what qmpsh must make of it."""

    text: str = ""
    commands: list[str] = field(default_factory=list)  # QMP commands qmpsh must send, in order
    echoes: int = 0  # pasted JSON echoes of a (QEMU) line: skipped, never sent
    pasted_replies: int = 0  # pasted {"return": ...} documents: skipped

    def add(self, text: str, command: str, echo: bool = False, pasted_replies: int = 0) -> Script:
        self.text += text if text.endswith("\n") else text + "\n"
        self.commands.append(command)
        self.echoes += echo
        self.pasted_replies += pasted_replies
        return self

    def wait(self, event: str) -> Script:
        self.text += f"/wait {event} device=job0\n"
        return self

    def write(self, layer: str) -> Script:
        pattern, offset, length = WRITES[layer]
        return self.add(qemu_io_write(pattern, offset, length).rstrip("\n"), "human-monitor-command")

    def chain(self, depth: str = "ABCD") -> Script:
        """The document's chain up to ``depth``, each layer written right after it is created."""
        self.write("A")
        snapshots = {"B": SNAPSHOT_B, "C": SNAPSHOT_C, "D": SNAPSHOT_D}
        for layer in depth[1:]:
            self.add(snapshots[layer], "blockdev-snapshot-sync", echo=layer == "B")
            self.write(layer)
        return self


@dataclass
class Outcome:
    replies: list[tuple[str, dict]]  # (command, reply) in order
    events: list[dict]
    stderr: str

    def reply(self, command: str, index: int = -1) -> object:
        found = [r for c, r in self.replies if c == command]
        assert found, f"no reply to {command}"
        return found[index]["return"]

    def event(self, name: str) -> dict:
        found = [e for e in self.events if e["event"] == name]
        assert len(found) == 1, f"expected one {name}, got {found}"
        return found[0]


def run(socket_path: str, script: Script) -> Outcome:
    """Run ``script`` through scripted qmpsh; check its output contract and that every command succeeded."""
    result = run_qmpsh(socket_path, stdin=script.text, timeout=90)
    shown = f"stderr:\n{result.stderr}\nstdout:\n{result.stdout}"
    assert result.returncode == 0, f"exit status {result.returncode}\n{shown}"
    documents = json_lines(result.stdout, shown)
    assert all(isinstance(d, dict) for d in documents)
    replies = [d for d in documents if "return" in d or "error" in d]
    events = [d for d in documents if "event" in d]
    assert len(replies) + len(events) == len(documents), result.stdout
    # One reply per command sent: a pasted JSON echo that had been run again would add one.
    assert len(replies) == len(script.commands), (
        f"{len(script.commands)} commands in the script, {len(replies)} replies\n{shown}")
    assert result.stderr.count("skipped JSON form of the") == script.echoes, result.stderr
    assert result.stderr.count("skipped pasted reply") == script.pasted_replies, result.stderr
    paired = list(zip(script.commands, replies, strict=False))
    for command, reply in paired:
        assert "return" in reply, f"{command} failed: {reply}\n{shown}"
        if command == "human-monitor-command":  # HMP errors come back as text in a successful reply
            assert reply["return"] == "", f"HMP qemu-io failed: {reply['return']!r}"
    return Outcome(paired, events, result.stderr)


def finish(script: Script) -> Script:
    """Report the device and the graph, then the document's quit: QEMU closes the socket, qmpsh exits 0.

    quit ends the session, so the JSON echo after it is never read (no note about it either).
    """
    script.add("query-block", "query-block").add("query-named-block-nodes", "query-named-block-nodes")
    return script.add(QUIT, "quit")


def chain_of(nodes: object, node: str) -> list[str]:
    """File names from ``node`` down its backing chain, as query-named-block-nodes reports them (normalised)."""
    assert isinstance(nodes, list)
    by_name = {n["node-name"]: n for n in nodes}
    assert node in by_name, f"{node} not among {sorted(by_name)}"
    image = by_name[node]["image"]
    files = []
    while image is not None:
        files.append(os.path.normpath(image["filename"]))  # QEMU joins "./" and "./x" as "././x"
        image = image.get("backing-image")
    return files


def guest_node(outcome: Outcome) -> str:
    """The node the guest's disk (virtio0) is attached to."""
    (disk,) = outcome.reply("query-block")
    assert disk["qdev"] == GUEST_DISK, disk
    return disk["inserted"]["node-name"]


def format_nodes(nodes: object) -> set[str]:
    assert isinstance(nodes, list)
    return {n["node-name"] for n in nodes if n["drv"] == "qcow2"}


def job_done(outcome: Outcome, kind: str) -> None:
    """The job ended with BLOCK_JOB_COMPLETED, without an error."""
    data = outcome.event("BLOCK_JOB_COMPLETED")["data"]
    assert data["device"] == "job0" and data["type"] == kind, data
    assert "error" not in data, data
    assert data["offset"] == data["len"], data


def stopped(vm) -> None:
    vm.process.wait(timeout=10)
    assert vm.process.returncode == 0


# -- the chain itself -------------------------------------------------------------

def test_build_chain(qemu, ref):
    outcome = run(qemu.socket, finish(Script().chain()))
    assert outcome.stderr.count("skipped JSON form of the blockdev-snapshot-sync line above") == 1
    nodes = outcome.reply("query-named-block-nodes")
    assert guest_node(outcome) == "node-D"
    assert chain_of(nodes, "node-D") == ["d.qcow2", "c.qcow2", "b.qcow2", "a.qcow2"]
    assert format_nodes(nodes) == {"node-A", "node-B", "node-C", "node-D"}
    assert [e["event"] for e in outcome.events] == ["SHUTDOWN"]
    stopped(qemu)
    assert [header_backing(qemu.dir / f) for f in ("a.qcow2", "b.qcow2", "c.qcow2", "d.qcow2")] == [
        None, "a.qcow2", "b.qcow2", "c.qcow2"]
    # Each point in time, and each layer's own delta.
    check_layers(qemu.dir, ref, full={"a.qcow2": "A", "b.qcow2": "AB", "c.qcow2": "ABC", "d.qcow2": "ABCD"},
                 own={"b.qcow2": "B", "c.qcow2": "C", "d.qcow2": "D"})


# -- block-stream -----------------------------------------------------------------

STREAM_CASE_1 = """\
(QEMU) block-stream device=node-D job-id=job0
{
    "execute": "block-stream",
    "arguments": {
        "device": "node-D",
        "job-id": "job0"
    }
}
"""


@pytest.mark.parametrize(("paste", "echo", "top", "chain", "own"), [
    pytest.param(STREAM_CASE_1, True, "node-D", ["d.qcow2"], {"d.qcow2": "ABCD"}, id="case1-all-into-D"),
    pytest.param("(QEMU) block-stream device=node-D base-node=node-A job-id=job0\n", False, "node-D",
                 ["d.qcow2", "a.qcow2"], {"d.qcow2": "BCD", "a.qcow2": "A"}, id="case2-B-C-into-D"),
    pytest.param("(QEMU) block-stream device=node-C base-node=node-A job-id=job0\n", False, "node-D",
                 ["d.qcow2", "c.qcow2", "a.qcow2"], {"d.qcow2": "D", "c.qcow2": "BC", "a.qcow2": "A"},
                 id="case3-intermediate-B-into-C"),
])
def test_block_stream(qemu, ref, paste, echo, top, chain, own):
    script = Script().chain().add(paste, "block-stream", echo=echo).wait("BLOCK_JOB_COMPLETED")
    script.add(QUERY_BLOCK_JOBS, "query-block-jobs", echo=True)
    outcome = run(qemu.socket, finish(script))
    job_done(outcome, "stream")
    assert outcome.reply("query-block-jobs") == []
    nodes = outcome.reply("query-named-block-nodes")
    assert guest_node(outcome) == "node-D"
    assert chain_of(nodes, top) == chain
    stopped(qemu)
    # QEMU rewrote the headers: each file of the new chain points at the next one.
    assert [header_backing(qemu.dir / f) for f in chain] == [*chain[1:], None]
    # The streamed-from images stay valid and unchanged.
    check_layers(qemu.dir, ref, full={"d.qcow2": "ABCD", "b.qcow2": "AB"}, own={**own, "b.qcow2": "B"})


# -- block-commit -----------------------------------------------------------------

COMMIT_CASE_1 = """\
(QEMU) block-commit device=node-D base=a.qcow2 top=b.qcow2 job-id=job0
{
    "execute": "block-commit",
    "arguments": {
        "device": "node-D",
        "job-id": "job0",
        "top": "b.qcow2",
        "base": "a.qcow2"
    }
}
"""
ACTIVE_COMMIT = COMMIT_CASE_1.replace("top=b.qcow2", "top=d.qcow2").replace('"top": "b.qcow2"', '"top": "d.qcow2"')


def test_block_commit_case1(qemu, ref):
    script = Script().chain().add(COMMIT_CASE_1, "block-commit", echo=True).wait("BLOCK_JOB_COMPLETED")
    outcome = run(qemu.socket, finish(script))
    job_done(outcome, "commit")
    assert "BLOCK_JOB_READY" not in [e["event"] for e in outcome.events]
    nodes = outcome.reply("query-named-block-nodes")
    assert guest_node(outcome) == "node-D"
    assert chain_of(nodes, "node-D") == ["d.qcow2", "c.qcow2", "a.qcow2"]
    assert "node-B" not in format_nodes(nodes)
    stopped(qemu)
    assert header_backing(qemu.dir / "c.qcow2") == "a.qcow2"
    check_layers(qemu.dir, ref, full={"d.qcow2": "ABCD", "c.qcow2": "ABC"},
                 own={"a.qcow2": "AB", "c.qcow2": "C", "d.qcow2": "D"})


def test_block_commit_active(qemu, ref):
    assert '"top": "d.qcow2"' in ACTIVE_COMMIT and "top=d.qcow2" in ACTIVE_COMMIT
    script = Script().chain().add(ACTIVE_COMMIT, "block-commit", echo=True).wait("BLOCK_JOB_READY")
    script.add(QUERY_BLOCK_JOBS_WITH_REPLY, "query-block-jobs", echo=True, pasted_replies=1)
    script.add(BLOCK_JOB_COMPLETE, "block-job-complete", echo=True, pasted_replies=1)
    script.wait("BLOCK_JOB_COMPLETED")
    outcome = run(qemu.socket, finish(script))
    assert outcome.event("BLOCK_JOB_READY")["data"]["type"] == "commit"
    jobs = outcome.reply("query-block-jobs")
    assert len(jobs) == 1 and jobs[0]["ready"] is True and jobs[0]["type"] == "commit", jobs
    job_done(outcome, "commit")
    nodes = outcome.reply("query-named-block-nodes")
    # Completed: the guest writes to [A] again; B, C and D left the graph.
    assert guest_node(outcome) == "node-A"
    assert format_nodes(nodes) == {"node-A"}
    assert chain_of(nodes, "node-A") == ["a.qcow2"]
    stopped(qemu)
    check_layers(qemu.dir, ref, full={"a.qcow2": "ABCD"}, own={"a.qcow2": "ABCD"})


# -- drive-mirror -------------------------------------------------------------------

DRIVE_MIRROR = """\
(QEMU) drive-mirror device=node-D target=e.qcow2 sync=full job-id=job0
{
    "execute": "drive-mirror",
    "arguments": {
        "device": "node-D",
        "job-id": "job0",
        "target": "e.qcow2",
        "sync": "full"
    }
}
"""


def test_drive_mirror_full_then_cancel(qemu, ref):
    script = Script().chain().add(DRIVE_MIRROR, "drive-mirror", echo=True).wait("BLOCK_JOB_READY")
    script.add(QUERY_BLOCK_JOBS, "query-block-jobs", echo=True)
    script.add(BLOCK_JOB_CANCEL, "block-job-cancel", echo=True).wait("BLOCK_JOB_COMPLETED")
    outcome = run(qemu.socket, finish(script))
    jobs = outcome.reply("query-block-jobs")
    assert len(jobs) == 1 and jobs[0]["type"] == "mirror" and jobs[0]["ready"] is True, jobs
    job_done(outcome, "mirror")
    assert "BLOCK_JOB_CANCELLED" not in [e["event"] for e in outcome.events]
    nodes = outcome.reply("query-named-block-nodes")
    # Cancelled after READY: the guest stays on its chain, e.qcow2 is a point-in-time copy.
    assert guest_node(outcome) == "node-D"
    assert chain_of(nodes, "node-D") == ["d.qcow2", "c.qcow2", "b.qcow2", "a.qcow2"]
    stopped(qemu)
    assert header_backing(qemu.dir / "e.qcow2") is None
    check_layers(qemu.dir, ref, full={"d.qcow2": "ABCD"}, own={"e.qcow2": "ABCD"})


# -- drive-mirror to another QEMU over NBD ------------------------------------------

NBD_SERVER_START = """\
(QEMU) nbd-server-start addr={"type":"inet","data":{"host":"::","port":"49153"}}
{
    "execute": "nbd-server-start",
    "arguments": {
        "addr": {
            "data": {
                "host": "::",
                "port": "49153"
            },
            "type": "inet"
        }
    }
}
"""
# As printed: the JSON echo has no "writable": true, the (QEMU) line's arguments must win.
NBD_SERVER_ADD = """\
(QEMU) nbd-server-add device=node-TargetDisk writable=true
{
    "execute": "nbd-server-add",
    "arguments": {
        "device": "node-TargetDisk"
    }
}
"""
NBD_DRIVE_MIRROR = """\
(QEMU) drive-mirror device=node-D target=nbd:localhost:49153:exportname=node-TargetDisk \
sync=top mode=existing job-id=job0
{
    "execute": "drive-mirror",
    "arguments": {
        "device": "node-D",
        "mode": "existing",
        "job-id": "job0",
        "target": "nbd:localhost:49153:exportname=node-TargetDisk",
        "sync": "top"
    }
}
"""
NBD_SERVER_STOP = """\
(QEMU) nbd-server-stop
{
    "execute": "nbd-server-stop",
    "arguments": {}
}
"""
CONT = """\
(QEMU) cont
{
    "execute": "cont",
    "arguments": {}
}
"""


def test_nbd_shallow_mirror(qemu, qemu_factory, ref):
    port = str(free_port())
    work = qemu.dir
    # The destination already has [A]+[B]+[C], made here independently of the source.
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(ref("ABC")), "Contents-of-A-B-C.qcow2", cwd=work)
    qemu_img("create", "-q", "-f", "qcow2", "-b", "./Contents-of-A-B-C.qcow2", "-F", "qcow2", "./target-disk.qcow2",
             cwd=work)
    # The document's destination: -S and -incoming. Without -incoming the guest's virtio-blk takes
    # the disk's write permission and nbd-server-add writable=true fails with a permission conflict;
    # with it, the device's permissions wait for the migration. "defer": no migration port needed.
    dst = qemu_factory([*seed_args("./target-disk.qcow2", "node-TargetDisk"), "-incoming", "defer"],
                       name="qmp-dst.sock")

    start = NBD_SERVER_START.replace('"::"', '"127.0.0.1"').replace("49153", port)
    serve = Script().add(start, "nbd-server-start", echo=True).add(NBD_SERVER_ADD, "nbd-server-add", echo=True)
    outcome = run(dst.socket, serve)
    assert "its arguments differ, the key=value line's were used" in outcome.stderr

    mirror = Script().chain().add(NBD_DRIVE_MIRROR.replace("49153", port), "drive-mirror", echo=True)
    mirror.wait("BLOCK_JOB_READY").add(BLOCK_JOB_CANCEL, "block-job-cancel", echo=True).wait("BLOCK_JOB_COMPLETED")
    outcome = run(qemu.socket, finish(mirror))
    job_done(outcome, "mirror")
    assert guest_node(outcome) == "node-D"
    assert chain_of(outcome.reply("query-named-block-nodes"), "node-D") == [
        "d.qcow2", "c.qcow2", "b.qcow2", "a.qcow2"]
    stopped(qemu)

    close = Script().add(NBD_SERVER_STOP, "nbd-server-stop", echo=True).add(CONT, "cont", echo=True)
    outcome = run(dst.socket, finish(close))
    assert chain_of(outcome.reply("query-named-block-nodes"), "node-TargetDisk") == [
        "target-disk.qcow2", "Contents-of-A-B-C.qcow2"]
    stopped(dst)
    # Shallow: only [D]'s data crossed; with the destination's backing file the guest sees it all.
    check_layers(work, ref, full={"target-disk.qcow2": "ABCD"}, own={"target-disk.qcow2": "D"})


# -- blockdev-mirror --------------------------------------------------------------

# The document prints "(QEMU) blockdev-mirror device=node-B ..." above a JSON echo with
# "device": "node-D"; its text (copy "the entire disk image chain, from [A] all the way to
# [D]") means node-D, so the key=value line is pasted with node-D here.
BLOCKDEV_MIRROR = """\
(QEMU) blockdev-mirror device=node-D target=node-E sync=full job-id=job0
{
    "execute": "blockdev-mirror",
    "arguments": {
        "device": "node-D",
        "job-id": "job0",
        "target": "node-E",
        "sync": "full"
    }
}
"""


def test_blockdev_mirror(qemu, ref):
    qemu_img("create", "-q", "-f", "qcow2", "e.qcow2", SIZE, cwd=qemu.dir)
    script = Script().chain().add(BLOCKDEV_ADD_E, "blockdev-add", echo=True)
    script.add(BLOCKDEV_MIRROR, "blockdev-mirror", echo=True).wait("BLOCK_JOB_READY")
    script.add(QUERY_BLOCK_JOBS, "query-block-jobs", echo=True)
    script.add(BLOCK_JOB_COMPLETE, "block-job-complete", echo=True, pasted_replies=1).wait("BLOCK_JOB_COMPLETED")
    outcome = run(qemu.socket, finish(script))
    jobs = outcome.reply("query-block-jobs")
    assert len(jobs) == 1 and jobs[0]["type"] == "mirror" and jobs[0]["ready"] is True, jobs
    job_done(outcome, "mirror")
    nodes = outcome.reply("query-named-block-nodes")
    # Completed: the guest now runs on node-E, a standalone copy. B, C and D left the graph;
    # node-A stays because -blockdev created it (the monitor holds it until blockdev-del).
    assert guest_node(outcome) == "node-E"
    assert format_nodes(nodes) == {"node-A", "node-E"}
    assert chain_of(nodes, "node-E") == ["e.qcow2"]
    stopped(qemu)
    check_layers(qemu.dir, ref, full={"d.qcow2": "ABCD"}, own={"e.qcow2": "ABCD"})


# -- drive-backup and blockdev-backup ---------------------------------------------

DRIVE_BACKUP = """\
(QEMU) drive-backup device=node-D sync=full target=e.qcow2 job-id=job0
{
    "execute": "drive-backup",
    "arguments": {
        "device": "node-D",
        "job-id": "job0",
        "sync": "full",
        "target": "e.qcow2"
    }
}
"""


def test_drive_backup(qemu, ref):
    script = Script().chain().add(DRIVE_BACKUP, "drive-backup", echo=True).wait("BLOCK_JOB_COMPLETED")
    outcome = run(qemu.socket, finish(script))
    job_done(outcome, "backup")
    assert guest_node(outcome) == "node-D"
    assert chain_of(outcome.reply("query-named-block-nodes"), "node-D") == [
        "d.qcow2", "c.qcow2", "b.qcow2", "a.qcow2"]
    stopped(qemu)
    assert header_backing(qemu.dir / "e.qcow2") is None
    check_layers(qemu.dir, ref, full={"d.qcow2": "ABCD"}, own={"e.qcow2": "ABCD"})


BLOCKDEV_BACKUP = """\
(QEMU) blockdev-backup device=node-B target=node-E sync=full job-id=job0
{
    "execute": "blockdev-backup",
    "arguments": {
        "device": "node-B",
        "job-id": "job0",
        "target": "node-E",
        "sync": "full"
    }
}
"""
# The document's quit, as printed in this section (odd indentation; the two lines of a
# garbled reply that follow it in the document are left out).
BACKUP_QUIT = """\
(QEMU) quit
{
        "execute": "quit",
            "arguments": {}
}
"""


def test_blockdev_backup(qemu, ref):
    qemu_img("create", "-q", "-f", "qcow2", "e.qcow2", SIZE, cwd=qemu.dir)
    script = Script().chain("AB").add(BLOCKDEV_ADD_E, "blockdev-add", echo=True)
    script.add(BLOCKDEV_BACKUP, "blockdev-backup", echo=True).wait("BLOCK_JOB_COMPLETED")
    script.add(QUERY_BLOCK_JOBS, "query-block-jobs", echo=True)
    script.add("query-block", "query-block").add("query-named-block-nodes", "query-named-block-nodes")
    script.add(BACKUP_QUIT, "quit")
    outcome = run(qemu.socket, script)
    job_done(outcome, "backup")
    assert outcome.reply("query-block-jobs") == []
    nodes = outcome.reply("query-named-block-nodes")
    assert guest_node(outcome) == "node-B"
    assert chain_of(nodes, "node-B") == ["b.qcow2", "a.qcow2"]
    assert chain_of(nodes, "node-E") == ["e.qcow2"]
    stopped(qemu)
    # The document's check: qemu-img compare b.qcow2 e.qcow2 -> "Images are identical."
    assert_same_data(qemu.dir / "b.qcow2", qemu.dir / "e.qcow2", "e.qcow2 should be a copy of [A] <- [B]")
    check_layers(qemu.dir, ref, full={"b.qcow2": "AB"}, own={"e.qcow2": "AB", "b.qcow2": "B"})
