"""Completion through the prompt_toolkit Completer API, against a real QEMU.

The completer is wired exactly as the interactive loop wires it
(``repl.completer_for``): the schema from ``query-qmp-schema``, live values
from the background ``Catalog``. The live values follow the live block
operations document: the chain [A] <- [B] <- [C] <- [D] built with
``blockdev-snapshot-sync``, a mirror job, a dirty bitmap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prompt_toolkit.completion import CompleteEvent, Completion
from prompt_toolkit.document import Document

from qmpsh.catalog import Catalog, fetch_hmp
from qmpsh.client import SocketTransport
from qmpsh.completion import QmpCompleter, Sources, wanted
from qmpsh.render import Renderer
from qmpsh.repl import completer_for, live_values
from qmpsh.session import Options, Session
from tests.conftest import GUEST_DISK, Qemu, free_port
from tests.integration.test_seed_flows import BLOCK_JOB_COMPLETE, DRIVE_MIRROR


TIMEOUT = 10.0
NODES = ["node-A", "node-B", "node-C", "node-D"]
CHAIN = [
    "blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
    "blockdev-snapshot-sync node-name=node-B snapshot-file=c.qcow2 snapshot-node-name=node-C format=qcow2",
    "blockdev-snapshot-sync node-name=node-C snapshot-file=d.qcow2 snapshot-node-name=node-D format=qcow2",
]


# -- helpers ---------------------------------------------------------------------


class Sent:
    """A wire tap keeping the commands sent."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.hmp: list[str] = []  # the command lines of human-monitor-command

    def sent(self, data: bytes) -> None:
        msg = json.loads(data)
        self.commands.append(str(msg["execute"]) if "execute" in msg else "")
        if msg.get("execute") == "human-monitor-command":
            self.hmp.append(msg["arguments"]["command-line"])

    def received(self, data: bytes) -> None:
        pass


@asynccontextmanager
async def connected(qemu: Qemu, tap: Sent | None = None, hmp: bool = False):
    """A session on ``qemu`` with its completer built as the interactive loop builds it; settled."""
    session = Session(Renderer(), Options(interactive=True, hmp=hmp), SocketTransport(qemu.socket, tap=tap))
    await session.connect()
    try:
        catalog = live_values(session)
        completer = completer_for(session, catalog)
        assert await asyncio.wait_for(session.ensure_schema(), TIMEOUT) is not None
        await asyncio.wait_for(catalog.settled(), TIMEOUT)
        yield session, completer, catalog
    finally:
        if qemu.alive():
            os.kill(qemu.process.pid, signal.SIGCONT)  # a test that froze QEMU must not hang the teardown
        await asyncio.wait_for(session.transport.close(), TIMEOUT)


def complete(completer: QmpCompleter, text: str) -> list[Completion]:
    return list(completer.get_completions(Document(text), CompleteEvent()))


def texts(completer: QmpCompleter, text: str) -> list[str]:
    return [c.text for c in complete(completer, text)]


def metas(completer: QmpCompleter, text: str) -> dict[str, str]:
    return {c.text: c.display_meta_text for c in complete(completer, text)}


def applied(text: str, completion: Completion) -> str:
    """The input after accepting ``completion`` with the cursor at the end of ``text``."""
    assert -len(text) <= completion.start_position <= 0
    return text[:len(text) + completion.start_position] + completion.text


async def run(session: Session, line: str) -> None:
    assert await asyncio.wait_for(session.run(line), TIMEOUT), f"{line!r} failed"


async def eventually(check: Callable[[], object], what: str, catalog: Catalog, timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` holds: the catalog refreshes in the background, on replies and events."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.wait_for(catalog.settled(), timeout)
        await asyncio.sleep(0.02)


def in_loop(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


# -- schema: commands, arguments, values ---------------------------------------------


def test_command_names_prefix_first_then_fuzzy_best_first(qemu):
    async def test() -> None:
        async with connected(qemu) as (session, completer, _catalog):
            names = texts(completer, "query-bl")
            hits = [n for n in names if n.startswith("query-bl")]
            assert names[:len(hits)] == hits == sorted(hits)
            assert {"query-block", "query-block-jobs", "query-blockstats"} <= set(hits)
            fuzzy = names[len(hits):]
            # Tightest spread first: "query-bl" whole inside a name, then spread ever wider.
            order = ["x-debug-query-block-graph", "query-balloon", "x-query-ramblock", "query-named-block-nodes"]
            assert [n for n in fuzzy if n in order] == order, fuzzy
            assert "query-status" not in names

            assert texts(completer, "qbj")[0] == "query-block-jobs"
            assert texts(completer, "block-stre")[0] == "block-stream"
            assert applied("block-stre", complete(completer, "block-stre")[0]) == "block-stream"
            assert texts(completer, "") == sorted(session.schema.commands)
            assert texts(completer, "/wa") == ["/wait"]
            assert "/help" in texts(completer, "/")
            # A pasted prompt and a leading "!" (send unchecked) are not part of the name.
            assert texts(completer, "(QEMU) block-stre")[0] == "block-stream"
            assert applied("!block-stre", complete(completer, "!block-stre")[0]) == "!block-stream"
            assert texts(completer, "zzzzqqqq") == []

    in_loop(test)


def test_argument_names_types_and_required(qemu):
    async def test() -> None:
        async with connected(qemu) as (_, completer, _catalog):
            meta = metas(completer, "block-stream ")
            assert meta["device="] == "string, required"
            assert meta["job-id="] == "string"
            assert meta["speed="] == "int"
            assert meta["on-error="] == "enum"
            assert meta["auto-finalize="] == "boolean"
            assert all(t.endswith("=") for t in meta), meta

            # Arguments already given are not offered again; the rest are.
            rest = texts(completer, "block-stream device=node-A job-id=s0 ")
            assert "device=" not in rest and "job-id=" not in rest and "base-node=" in rest
            assert texts(completer, "block-stream device=node-A ba")[:3] == ["backing-file=", "base=", "base-node="]
            assert "base-node=" in texts(completer, "block-stream bn")  # fuzzy
            assert applied("block-stream device=x sp", complete(completer, "block-stream device=x sp")[0]) \
                == "block-stream device=x speed="
            assert texts(completer, "!drive-mirror device=node-A sy") == ["sync="]
            assert texts(completer, "query-status ") == []  # takes no arguments
            assert texts(completer, "no-such-command ") == []
            assert metas(completer, "/help block-stream ")["device="] == "string, required"

    in_loop(test)


def test_nested_dotted_names_and_flat_union_branches(qemu):
    async def test() -> None:
        async with connected(qemu) as (_, completer, _catalog):
            text = "blockdev-add driver=qcow2 file."
            nested = metas(completer, text)
            assert all(t.startswith("file.") for t in nested), nested
            assert nested["file.driver="] == "enum, required"
            assert {"file.node-name=", "file.cache."} <= set(nested)
            assert applied(text + "dri", complete(completer, text + "dri")[0]) == text + "driver="
            # The file branch's own members appear once its driver is chosen.
            file_members = metas(completer, "blockdev-add driver=qcow2 file.driver=file file.")
            assert file_members["file.filename="] == "string, required"
            assert "file.driver=" not in file_members

            data = metas(completer, "nbd-server-start addr.type=inet addr.data.")
            assert data["addr.data.host="] == "string, required"
            assert data["addr.data.port="] == "string, required"
            assert "addr.data.path=" not in data  # that is the unix branch
            unix = texts(completer, "nbd-server-start addr.type=unix addr.data.")
            assert "addr.data.path=" in unix and "addr.data.host=" not in unix
            # addr is partly given: only "addr." goes on ("addr=" would clash with addr.type=).
            top = texts(completer, "nbd-server-start addr.type=inet ")
            assert "addr." in top and "addr=" not in top
            assert texts(completer, "nbd-server-start addr.type=inet addr.") == ["addr.data=", "addr.data."]

            qcow2 = metas(completer, "blockdev-add driver=qcow2 ")
            assert qcow2["lazy-refcounts="] == "boolean"
            assert qcow2["file="] == "object or string, required"
            assert "driver=" not in qcow2 and "offset=" not in qcow2
            raw = texts(completer, "blockdev-add driver=raw ")
            assert "lazy-refcounts=" not in raw and {"offset=", "size=", "file="} <= set(raw)
            base = texts(completer, "blockdev-add ")
            assert "driver=" in base and "lazy-refcounts=" not in base
            assert texts(completer, "blockdev-add driver=qcow2 lazy")[0] == "lazy-refcounts="

    in_loop(test)


def test_enum_and_boolean_values(qemu):
    async def test() -> None:
        async with connected(qemu) as (_, completer, _catalog):
            mirror = "drive-mirror device=node-A target=e.qcow2 "
            sync = metas(completer, mirror + "sync=")
            assert {"full", "top", "none", "incremental"} <= set(sync)
            assert set(sync.values()) == {"enum"}
            assert texts(completer, mirror + "sync=f") == ["full"]
            assert applied(mirror + "sync=to", complete(completer, mirror + "sync=to")[0]) == mirror + "sync=top"
            assert set(texts(completer, mirror + "mode=")) == {"existing", "absolute-paths"}
            assert {"stop", "report", "ignore"} <= set(texts(completer, "block-stream device=node-A on-error="))
            assert {"qcow2", "raw", "file"} <= set(texts(completer, "blockdev-add driver="))
            assert texts(completer, "blockdev-add driver=qco")[:2] == ["qcow", "qcow2"]
            assert "file" in texts(completer, "blockdev-add driver=qcow2 file.driver=")
            # format= is a plain string in the schema: the block drivers are offered all the same
            assert texts(completer, mirror + "format=qco")[:2] == ["qcow", "qcow2"]
            assert next(iter(metas(completer, "blockdev-snapshot-sync format=ra").items())) == ("raw", "block driver")
            assert "qcow2" in texts(completer, "transaction(\ndrive-backup device=node-A target=x format=")
            assert metas(completer, "screendump filename=x format=") == {"png": "enum", "ppm": "enum"}  # its own enum
            assert {"inet", "unix"} <= set(texts(completer, "nbd-server-start addr.type="))
            # Inside a transaction too.
            assert "full" in texts(completer, "transaction(\ndrive-backup device=node-A target=x sync=")

            assert metas(completer, "blockdev-add driver=qcow2 lazy-refcounts=") == {"false": "boolean",
                                                                                   "true": "boolean"}
            assert texts(completer, "block-stream device=node-A auto-finalize=t") == ["true"]
            assert texts(completer, "block-stream device=node-A speed=") == []  # an int: nothing to offer
            # A value the user quotes or writes as JSON is left alone.
            assert texts(completer, 'drive-mirror sync="f') == []
            assert texts(completer, "blockdev-add driver=qcow2 file={") == []

    in_loop(test)


def test_wait_events_and_transaction_actions(qemu):
    async def test() -> None:
        async with connected(qemu) as (session, completer, _catalog):
            events = metas(completer, "/wait ")
            assert set(events) == set(session.schema.events)
            assert events["BLOCK_JOB_COMPLETED"] == "event"
            assert texts(completer, "/wait BLOCK_JOB_C")[:2] == ["BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED"]
            keys = metas(completer, "/wait BLOCK_JOB_COMPLETED ")
            assert {"device=", "type=", "len=", "offset=", "speed=", "error="} <= set(keys)
            assert keys["device="] == "string, required" and keys["error="] == "string"
            assert "device=" not in texts(completer, "/wait BLOCK_JOB_COMPLETED device=job0 ")
            assert "status=" in texts(completer, "/wait JOB_STATUS_CHANGE ")

            actions = texts(completer, "transaction(\n")
            assert {"blockdev-snapshot-sync", "block-dirty-bitmap-add", "drive-backup", "abort"} <= set(actions)
            assert "query-status" not in actions and "blockdev-add" not in actions
            assert texts(completer, "transaction(\nblock-dirty-bitmap-a")[0] == "block-dirty-bitmap-add"
            assert texts(completer, "(QEMU) transaction(\nTRANS> blockdev-snapshot-s")[0] == "blockdev-snapshot-sync"
            args = metas(completer, "transaction(\nblockdev-snapshot-sync ")
            assert args["snapshot-file="] == "string, required"
            assert {"node-name=", "snapshot-node-name=", "format=", "mode="} <= set(args)
            one_line = texts(completer, "transaction( block-dirty-bitmap-add node=node-A ")
            assert "name=" in one_line and "node=" not in one_line
            assert set(texts(completer, "transaction(\nblock-dirty-bitmap-add node=node-A name=b\n")) == set(actions)

            # A newline inside a JSON value continues that value: no command names there.
            assert texts(completer, "blockdev-add driver=qcow2 file={\ndri") == []
            assert texts(completer, '{\n"execute": "query-st') == []
            # Separate lines of a paste are separate commands.
            assert "query-status" in texts(completer, "query-status\nquery-sta")

    in_loop(test)


# -- live values -----------------------------------------------------------------------


def test_live_values_of_the_chain_jobs_and_bitmaps(qemu):
    async def test() -> None:
        tap = Sent()
        async with connected(qemu, tap) as (session, completer, catalog):
            assert {"node-A", "file"} <= set(texts(completer, "block-stream device="))
            for line in CHAIN:
                await run(session, line)
            await run(session, "drive-mirror device=node-D target=e.qcow2 sync=full job-id=job0 speed=65536")
            await run(session, "block-dirty-bitmap-add node=node-B name=bm0")
            await eventually(lambda: {*NODES, "job0", "bm0"} <= set(texts(completer, "block-stream device=")
                                                                  + texts(completer, "job-cancel id=")
                                                                  + texts(completer, "block-dirty-bitmap-clear name=")),
                             "node-A..node-D, job0 and bm0 to be offered", catalog)

            stream = metas(completer, "block-stream device=")
            assert set(NODES) <= set(stream) and stream["node-B"] == "block node"
            assert texts(completer, "block-stream device=node-") == ["node-D", *NODES[:3]]  # the device's root first
            assert set(NODES) <= set(texts(completer, "blockdev-snapshot-sync node-name="))
            assert set(NODES) <= set(texts(completer, "block-stream device=node-D base-node="))
            assert set(NODES) <= set(texts(completer, "transaction(\nblockdev-backup device="))
            assert set(NODES) <= set(texts(completer, "blockdev-add driver=qcow2 node-name=x backing="))
            # Arguments that name something new get no live values.
            assert texts(completer, "blockdev-snapshot-sync node-name=node-D snapshot-node-name=") == []
            assert texts(completer, "blockdev-add driver=qcow2 node-name=") == []
            assert "node-A" not in texts(completer, "drive-mirror device=node-D target=x sync=full node-name=")

            assert metas(completer, "block-job-cancel device=") == {"job0": "job"}
            assert texts(completer, "job-cancel id=") == ["job0"]
            assert texts(completer, "block-job-set-speed device=j") == ["job0"]
            assert texts(completer, "job-pause id=") == ["job0"]

            # The image files of the typed device's chain (not the mirror's target e.qcow2).
            top = metas(completer, "block-commit device=node-D top=")
            assert set(top) == {"a.qcow2", "b.qcow2", "c.qcow2", "d.qcow2"}, top
            assert set(top.values()) == {"image file"}
            assert set(texts(completer, "block-commit device=node-C base=")) == {"a.qcow2", "b.qcow2", "c.qcow2"}
            assert {"a.qcow2", "d.qcow2"} <= set(texts(completer, "block-commit top="))

            # Dirty bitmaps of the node already typed.
            assert metas(completer, "block-dirty-bitmap-remove node=node-B name=") == {"bm0": "dirty bitmap"}
            assert texts(completer, "block-dirty-bitmap-remove node=node-A name=") == []
            assert texts(completer, "block-dirty-bitmap-add node=node-B name=") == []  # a new name
            assert texts(completer, "device_del id=") == ["virtio0"]
            # Device types, from qom-list-types: concrete ones only, asked once per connection.
            types = metas(completer, "device_add driver=virtio-blk-")
            assert {"virtio-blk-pci", "virtio-blk-device"} <= set(types) and set(types.values()) == {"device type"}
            assert "virtio-blk-pci-base" not in types  # abstract: device_add cannot add it
            assert "virtio-net-pci" in texts(completer, "device-list-properties typename=virtio-n")
            assert tap.commands.count("query-named-block-nodes") > 1  # refreshed after each command ...
            assert tap.commands.count("qom-list-types") == 1  # ... but the types only once

            # The document's first way out: cancel the ready mirror. job0 stops being offered.
            await run(session, "block-job-cancel device=job0")
            await eventually(lambda: texts(completer, "block-job-cancel device=") == [], "job0 to go", catalog)
            assert texts(completer, "job-cancel id=") == []
            assert set(NODES) <= set(texts(completer, "block-stream device="))

            # The second way out: complete a mirror of node-C. The job goes, and so do node-B and
            # node-C, which nothing uses after the pivot (node-A stays: -blockdev made it).
            await run(session, "drive-mirror device=node-D target=e2.qcow2 sync=full job-id=job1 node-name=node-E")
            await eventually(lambda: texts(completer, "job-complete id=") == ["job1"], "job1 to be offered", catalog)
            await run(session, "/wait BLOCK_JOB_READY device=job1 timeout=10")
            await run(session, "block-job-complete device=job1")
            await eventually(lambda: "node-D" not in texts(completer, "block-stream device="), "node-D to go", catalog)
            assert texts(completer, "block-job-complete device=") == []
            nodes = texts(completer, "block-stream device=")
            assert "node-E" in nodes and "node-A" in nodes and not {"node-B", "node-C", "node-D"} & set(nodes)
            assert texts(completer, "block-commit device=node-E top=") == ["e2.qcow2"]
            assert texts(completer, "block-dirty-bitmap-clear name=") == []  # bm0 went with node-B

    in_loop(test)


def test_after_the_documents_mirror_pivot_the_devices_new_root_comes_first(qemu):
    """The document's drive-mirror, then block-job-complete: the guest's disk now sits on a node QEMU
    named itself (#block123). device= and node-name= offer it first, as the root of virtio0, and
    protocol nodes (file) last; the block device's qdev id is offered where QEMU takes one."""

    async def test() -> None:
        async with connected(qemu) as (session, completer, catalog):
            for line in CHAIN:
                await run(session, line)
            await eventually(lambda: "node-D" in texts(completer, "drive-backup device="), "node-D", catalog)
            before = metas(completer, "drive-backup device=")
            assert list(before) == ["node-D", "node-A", "node-B", "node-C", "file"], before
            assert before["node-D"] == "root of virtio0" and before["node-B"] == "block node"
            assert before["file"] == "protocol node (file)"

            await run(session, DRIVE_MIRROR)
            await run(session, "/wait BLOCK_JOB_READY device=job0 timeout=10")
            await run(session, BLOCK_JOB_COMPLETE)
            await run(session, "/wait BLOCK_JOB_COMPLETED device=job0 timeout=10")
            await eventually(lambda: "node-D" not in texts(completer, "drive-backup device="), "the pivot", catalog)
            offered = metas(completer, "drive-backup device=")
            root = next(iter(offered))
            assert root.startswith("#block"), offered
            assert offered == {root: "root of virtio0", "node-A": "block node", "file": "protocol node (file)"}
            assert list(offered) == [root, "node-A", "file"]
            for text in ("block-stream device=", "blockdev-snapshot-sync node-name=", "block-dirty-bitmap-add node=",
                         "transaction(\nblockdev-snapshot-sync node-name="):
                assert texts(completer, text)[0] == root, text
            assert texts(completer, "drive-backup device=#")[0] == root  # then the automatic names of other nodes
            assert root not in texts(completer, "block-stream device=node-D base-node=")  # never a base
            assert texts(completer, "drive-backup device=fi")[0] == "file"  # a prefix still decides first
            # The root offered is the one QEMU takes.
            await run(session, f"drive-backup device={root} target=f.qcow2 sync=full job-id=job1")
            await run(session, "/wait BLOCK_JOB_COMPLETED device=job1 timeout=10")

            # The qdev id QEMU takes for id= is query-block's, not the -device id (virtio0 is the proxy).
            qdev = metas(completer, "block_set_io_throttle id=")
            assert qdev == {GUEST_DISK: "block device"}, qdev
            await run(session, f"block_set_io_throttle id={GUEST_DISK} bps=0 bps_rd=0 bps_wr=0 iops=0 iops_rd=0 "
                               "iops_wr=0")
            assert texts(completer, "device_del id=") == ["virtio0"]

    in_loop(test)


def test_hmp_mode_completes_hmp_commands_info_and_block_devices(qemu):
    """-H: HMP's command names and info's subcommands (from its help, asked once per connection),
    and live values where an HMP argument names a block device or a job."""

    async def test() -> None:
        tap = Sent()
        async with connected(qemu, tap, hmp=True) as (session, completer, catalog):
            names = metas(completer, "")
            assert {"block_resize", "info", "cont", "drive_del", "eject", "qemu-io"} <= set(names)
            assert "c" not in names and "query-status" not in names  # no one-letter aliases, no QMP
            assert names["block_resize"] == "resize a block image"
            assert texts(completer, "block_resi") == ["block_resize"]
            assert texts(completer, "(qemu) block_resi") == ["block_resize"]  # pasted from HMP's docs
            assert "query-status" not in texts(completer, "query-st")
            assert texts(completer, "info bl")[:3] == ["block", "block-jobs", "blockstats"]
            assert metas(completer, "info stat")["status"] == "show the current VM status (running|paused)"
            assert texts(completer, "help block_job_c")[:2] == ["block_job_cancel", "block_job_complete"]
            assert texts(completer, "? block_resi") == ["block_resize"]  # help's alias

            # Block devices where the help names the argument so, the device's root first.
            devices = {"node-A": "root of virtio0", "file": "protocol node (file)"}
            for text in ("info block ", "info block -n ", "block_resize ", "eject -f ", "drive_del ",
                         "qemu-io ", "nbd_server_add -w ", "block_stream "):
                assert metas(completer, text) == devices, text
                assert texts(completer, text) == list(devices), text
            assert texts(completer, "block_resize node-A ") == []  # the size
            assert texts(completer, "device_del ") == ["virtio0"]
            for text in ("gdbserver ", "ringbuf_read ", "screendump x.ppm ", "set_link ", "info status ", "nosuch "):
                assert texts(completer, text) == [], text  # no block device there, or no argument at all

            # An export made by HMP lines (no event says so): the catalog refreshes after HMP lines too.
            await run(session, f"nbd_server_start 127.0.0.1:{free_port()}")
            await run(session, "nbd_server_add node-A")
            await eventually(lambda: texts(completer, "nbd_server_remove ") == ["node-A"], "the export", catalog)
            await run(session, "nbd_server_stop")
            # HMP's block_job_* call the job "device".
            await session.query("drive-mirror", {"device": "node-A", "target": "e.qcow2", "sync": "full",
                                                 "job-id": "job0"})
            await eventually(lambda: texts(completer, "block_job_cancel ") == ["job0"], "the mirror job", catalog)
            assert metas(completer, "block_job_cancel -f ") == {"job0": "job"}
            await run(session, "block_job_cancel -f job0")
            await eventually(lambda: texts(completer, "block_job_complete ") == [], "the job to go", catalog)

            # Built-ins are qmpsh's own, in both modes.
            assert texts(completer, "/wa") == ["/wait"]
            assert texts(completer, "/wait BLOCK_JOB_C")[:2] == ["BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED"]
            assert tap.hmp.count("help") == tap.hmp.count("help info") == 1, tap.hmp  # once per connection

        async with connected(qemu) as (_, completer, _catalog):  # QMP mode asks HMP nothing
            assert "drive_del" not in texts(completer, "drive_d")
            assert texts(completer, "info bl") == []

    in_loop(test)


def test_completion_answers_from_the_cache_while_qemu_is_frozen(qemu):
    """QEMU stopped with SIGSTOP, a refresh stuck on it: completion still answers at once."""

    async def test() -> None:
        async with connected(qemu) as (session, completer, catalog):
            await run(session, CHAIN[0])
            await eventually(lambda: "node-B" in texts(completer, "block-stream device="), "node-B", catalog)
            refreshes = catalog.refreshes
            os.kill(qemu.process.pid, signal.SIGSTOP)
            try:
                catalog.refresh()
                await asyncio.sleep(catalog.DEBOUNCE + 0.2)  # the refresh has asked QEMU and waits
                assert catalog.refreshes == refreshes, "the refresh finished although QEMU is stopped"
                for text, expected in [("block-stream device=", {"node-A", "node-B", "file"}),
                                       ("block-dirty-bitmap-add node=node-", {"node-A", "node-B"}),
                                       ("device_del id=", {"virtio0"}),
                                       ("block-commit device=node-B top=", {"a.qcow2", "b.qcow2"}),
                                       ("blockdev-add driver=qcow2 file.", {"file.driver="}),
                                       ("query-bl", {"query-block"}),
                                       ("/wait BLOCK_JOB_COMPLETED ", {"device="})]:
                    started = time.perf_counter()
                    found = texts(completer, text)
                    elapsed = time.perf_counter() - started
                    assert expected <= set(found), (text, found)
                    assert elapsed < 0.05, f"{text!r} took {elapsed * 1000:.1f} ms with QEMU stopped"
                assert catalog.refreshes == refreshes
            finally:
                os.kill(qemu.process.pid, signal.SIGCONT)
            await asyncio.wait_for(catalog.settled(), TIMEOUT)
            assert catalog.refreshes > refreshes
            assert "node-B" in texts(completer, "block-stream device=")

    in_loop(test)


def test_a_steady_stream_of_refresh_triggers_still_renews_the_values(qemu):
    """Events that change live values, one every 20 ms (faster than the debounce): new values still arrive."""

    async def test() -> None:
        async with connected(qemu) as (session, completer, catalog):
            stop = asyncio.Event()

            async def storm() -> None:  # what an event flood does: one on_event per event
                while not stop.is_set():
                    catalog.on_event({"event": "BLOCK_JOB_ERROR", "data": {}})
                    await asyncio.sleep(0.02)

            flood = asyncio.ensure_future(storm())
            try:
                await asyncio.sleep(0.2)
                before, started = catalog.refreshes, time.monotonic()
                await run(session, CHAIN[0])
                deadline = time.monotonic() + 3
                while "node-B" not in texts(completer, "block-stream device="):
                    assert time.monotonic() < deadline, "node-B never arrived while the triggers kept coming"
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)
                # each fetch follows its own DEBOUNCE: at most one per DEBOUNCE, not one per trigger
                most = (time.monotonic() - started) / catalog.DEBOUNCE + 1
                assert 2 <= catalog.refreshes - before <= most
            finally:
                stop.set()
                await flood

    in_loop(test)


def test_a_refresh_right_after_clear_runs_although_the_old_one_was_under_way(qemu):
    """What a reconnect does (clear, then refresh) while a refresh waits or fetches: the new one still runs."""

    async def test() -> None:
        async with connected(qemu) as (_session, completer, catalog):
            for pause in (0.0, catalog.DEBOUNCE + 0.002):  # during the debounce, then during the fetch
                catalog.refresh()
                await asyncio.sleep(pause)
                catalog.clear()
                assert texts(completer, "block-stream device=") == []
                catalog.refresh()
                await asyncio.wait_for(catalog.settled(), TIMEOUT)
                assert "node-A" in texts(completer, "block-stream device="), f"nothing fetched (pause {pause})"
                assert "virtio-blk-pci" in texts(completer, "device_add driver=virtio-blk")

    in_loop(test)


# -- robustness: never raise ------------------------------------------------------------------


SEED_TEXTS = [
    *CHAIN,
    "(QEMU) drive-mirror device=node-D target=e.qcow2 sync=full job-id=job0",
    "drive-mirror device=node-D target=nbd:localhost:49153:exportname=node-TargetDisk sync=top mode=existing",
    'nbd-server-start addr={"type":"inet","data":{"host":"::","port":"49153"}}',
    "nbd-server-start addr.type=inet addr.data.host=127.0.0.1 addr.data.port=10809",
    'blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}',
    "blockdev-add driver=qcow2 file.driver=file file.filename=a.qcow2 file.cache.direct=on lazy-refcounts=",
    "block-commit device=node-D base=a.qcow2 top=c.qcow2 job-id=job0",
    "block-dirty-bitmap-remove node=node-B name=bm0",
    "block-job-cancel device=job0",
    "/wait BLOCK_JOB_COMPLETED device=job0 timeout=5",
    "/help blockdev-add driver=qcow2 ",
    "transaction(\nblock-dirty-bitmap-add node=node-A name=bm0\nTRANS> blockdev-snapshot-sync node-name=node-A ",
    "transaction( abort ",
    '{\n    "execute": "block-job-cancel",\n    "arguments": {\n        "device": "job0"\n    }\n',
    "!blockdev-add driver=raw file=node-A ",
    "x-blockdev-change parent=node-A child=",
    "info block -n node-", "block_job_cancel -f ", "help info ", "? block_", "qemu-io -d node-A \"write 0 1M\" ",
    "(qemu) eject -f ", "drive_add 0 if=none,file=x ", "c ",
]
NASTY = ["", " ", "\n", "=", "==", ".", "...=", "a..b=", "/", "/wait", "/wait ", "/help ", "transaction(",
         "transaction(abort", "transaction(\n)", "(QEMU)", "TRANS> ", "!", "!!", "{", "}", "[", '"', "'",
         "block-stream device='",
         "blockdev-add driver=qcow2 file=x file.", "blockdev-add file.=", "blockdev-add .driver=",
         "blockdev-add driver=qcow2 driver=raw ", "blockdev-add driver=[] file.", "blockdev-add driver={} ",
         "nbd-server-start addr=1 addr.", "nbd-server-start addr.type={} addr.data.",
         "x a=" + "[" * 3000 + "]" * 3000 + " ", "x a=" + "[" * 3000 + "\nb", "block-stream device=\x00\udcff "]


def test_wanted_and_candidates_never_raise(qemu):
    """Random and mutated lines: what is wanted, and every source's answer, never raise."""

    async def setup() -> tuple[Session, Catalog]:
        async with connected(qemu) as (session, completer, catalog):
            await run(session, CHAIN[0])
            await run(session, "block-dirty-bitmap-add node=node-B name=bm0")
            await eventually(lambda: "bm0" in texts(completer, "block-dirty-bitmap-clear name="), "bm0", catalog)
            hmp = await fetch_hmp(session.query)  # for -H, which the same catalog answers
            assert hmp is not None and hmp.commands
            catalog.snapshot = replace(catalog.snapshot, hmp=hmp)
            return session, catalog

    session, catalog = asyncio.run(setup())
    schema = session.schema
    assert schema is not None and catalog.snapshot.values
    sources = Sources(lambda: schema, catalog, lambda: list(schema.commands))
    completers = [QmpCompleter(sources), QmpCompleter(sources, hmp=True)]
    schemaless = Sources(lambda: None, catalog, lambda: list(schema.commands))  # a server without a schema

    def check(text: str) -> None:
        for want in (wanted(text), wanted(text, hmp=True)):
            for candidate in sources.candidates(want) + schemaless.candidates(want):
                assert isinstance(candidate.text, str) and isinstance(candidate.meta, str)
        for completer in completers:
            for completion in completer.get_completions(Document(text), CompleteEvent()):
                assert -len(text) <= completion.start_position <= 0

    for text in NASTY + SEED_TEXTS:
        check(text)

    vocabulary = sorted({*schema.commands, *schema.events, *(f"{m.name}=" for t in schema.types
                                                             for m in _members(schema, t)),
                         *(f"{m.name}." for t in schema.types for m in _members(schema, t)),
                         "node-A", "job0", "bm0", "qcow2", "inet", "true", "{", "}", "[", "]", '"', "'", "=", ".",
                         "/wait", "/help", "transaction(", ")", "(QEMU)", "TRANS>", "!", "\n", "?",
                         *catalog.snapshot.hmp.commands, *catalog.snapshot.hmp.info, "-f", "(qemu)"})
    words = st.lists(st.sampled_from(vocabulary) | st.text(max_size=6), max_size=8)
    joined = st.tuples(words, st.lists(st.sampled_from([" ", "", "\n", "  "]), min_size=8, max_size=8)).map(
        lambda pair: "".join(w + s for w, s in zip(pair[0], pair[1], strict=False)))
    mutation = st.tuples(st.integers(0, 200), st.integers(0, 3), st.text(max_size=3))

    def mutate(text: str, edits: list[tuple[int, int, str]], cut: int) -> str:
        for at, remove, insert in edits:
            at %= len(text) + 1
            text = text[:at] + insert + text[at + remove:]
        return text[:cut % (len(text) + 1)]  # the cursor anywhere: what comes before it

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(SEED_TEXTS), st.lists(mutation, max_size=4), st.integers(0, 400))
    @example("drive-mirror device=node-A sync=", [], 400)
    def mutated(seed: str, edits: list[tuple[int, int, str]], cut: int) -> None:
        check(mutate(seed, edits, cut))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.one_of(joined, st.text(max_size=40)))
    def composed(text: str) -> None:
        check(text)

    mutated()
    composed()


def _members(schema, type_name: str) -> Iterator:
    if schema.meta(type_name) != "object":
        return iter(())
    return iter(schema.members(type_name))
