"""Live values for completion: block node-names, job ids, device ids, bitmaps, exports, device types.

Values are fetched in the background into a new ``Snapshot`` that replaces
the old one whole; a refresh asked for during a refresh runs once more after
it, however many times it was asked. Readers
(the completer) only ever look at the current snapshot: they never wait on
QEMU, so a slow or frozen QEMU cannot freeze typing.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, cast

from qmpsh.events import Event, Subscriber
from qmpsh.hmp import HmpHelp, parse_help
from qmpsh.transport import CommandError, TransportError

if TYPE_CHECKING:
    from qmpsh.jsontypes import JSON, BlockDeviceInfo
    from qmpsh.syntax import Request


class Source(Enum):
    NODE = "block node"
    ROOT = "root node"  # any node, devices' roots first: what device= and node-name= mostly want
    BLOCK_DEVICE = "block device"  # the qdev id of a guest device with a block backend (query-block)
    JOB = "job"
    DEVICE = "device"
    BITMAP = "dirty bitmap"
    EXPORT = "export"
    IMAGE = "image file"
    DEVICE_TYPE = "device type"  # what device_add can add: fixed for a QEMU binary, fetched once


#: Which live values an argument takes: (command pattern, argument path, source).
#: The first row that matches wins, so specific rows stand before general ones;
#: a source of None says the argument names something new (no live values).
ARGUMENT_SOURCES: list[tuple[str, str, Source | None]] = [
    ("blockdev-add", "node-name", None),
    ("blockdev-create", "job-id", None),
    ("blockdev-snapshot-sync", "snapshot-node-name", None),
    ("block-dirty-bitmap-add", "name", None),
    ("block-job-*", "device", Source.JOB),
    ("job-*", "id", Source.JOB),
    ("drive-mirror", "node-name", None),  # the name of the new target node
    ("block-commit", "base", Source.IMAGE),
    ("block-commit", "top", Source.IMAGE),
    ("block-stream", "base", Source.IMAGE),
    ("block-dirty-bitmap-*", "name", Source.BITMAP),
    ("block-dirty-bitmap-merge", "target", Source.BITMAP),
    ("blockdev-mirror", "target", Source.NODE),
    ("blockdev-backup", "target", Source.NODE),
    ("blockdev-snapshot", "overlay", Source.NODE),
    ("nbd-server-remove", "name", Source.EXPORT),
    ("block-export-del", "id", Source.EXPORT),
    ("device_del", "id", Source.DEVICE),
    ("device_add", "driver", Source.DEVICE_TYPE),
    ("device-list-properties", "typename", Source.DEVICE_TYPE),
    ("blockdev-*-tray", "id", Source.BLOCK_DEVICE),
    ("blockdev-*-medium", "id", Source.BLOCK_DEVICE),
    ("eject", "id", Source.BLOCK_DEVICE),
    ("block_set_io_throttle", "id", Source.BLOCK_DEVICE),
    ("blockdev-del", "node-name", Source.NODE),  # a node nothing uses: no device's root
    ("*", "node-name", Source.ROOT),
    ("*", "node", Source.ROOT),
    ("*", "device", Source.ROOT),
    ("*", "base-node", Source.NODE),
    ("*", "top-node", Source.NODE),
    ("*", "bottom", Source.NODE),
    ("*", "replaces", Source.NODE),
    ("*", "filter-node-name", None),
    ("*", "file", Source.NODE),
    ("*", "backing", Source.NODE),
]

#: Which live values an HMP command's argument takes, by the name HMP's help gives it; as above.
HMP_ARGUMENT_SOURCES: list[tuple[str, str, Source | None]] = [
    ("block_job_*", "device", Source.JOB),
    ("device_del", "device", Source.DEVICE),
    ("nbd_server_remove", "name", Source.EXPORT),
    ("gdbserver", "device", None),  # a character device
    ("ringbuf_*", "device", None),  # a character device
    ("screendump", "device", None),  # a display
    ("*", "device", Source.ROOT),
    ("*", "node", Source.ROOT),
]

#: Commands after which live values may have changed.
CHANGING_COMMANDS = ("blockdev-*", "block-*", "drive-*", "job-*", "device_add", "device_del", "nbd-server-*",
                     "transaction", "x-blockdev-*", "block_resize", "human-monitor-command")
#: Events after which live values may have changed.
CHANGING_EVENTS = ("JOB_STATUS_CHANGE", "BLOCK_JOB_*", "DEVICE_DELETED", "BLOCK_EXPORT_DELETED")


def source_for(command: str, path: str,
               table: list[tuple[str, str, Source | None]] = ARGUMENT_SOURCES) -> Source | None:
    """The live source for an argument (``path`` is dotted: ``file.node-name``)."""
    leaf = path.rsplit(".", 1)[-1]
    for pattern, argument, source in table:
        if fnmatch.fnmatchcase(command, pattern) and argument in (path, leaf):
            return source
    return None


def changes_values(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


#: Sources whose values belong to the block node named by another argument:
#: a node's own dirty bitmaps, the image files of a device's backing chain.
SCOPED_BY = {Source.BITMAP: "node", Source.IMAGE: "device"}


#: Drivers of protocol nodes (the file under an image): seldom what a device= or node-name= wants.
PROTOCOL_DRIVERS = frozenset({
    "file", "host_device", "host_cdrom", "nbd", "nfs", "iscsi", "ssh", "gluster", "http", "https", "ftp", "ftps",
    "rbd", "nvme", "nvme-io_uring", "io_uring", "null-co", "null-aio", "vvfat", "virtio-blk-vfio-pci",
    "virtio-blk-vhost-user", "virtio-blk-vhost-vdpa",
})


class Likely(IntEnum):
    """How likely a block node fits an argument that wants a device or a root node (lower: likelier)."""

    ROOT = 0  # a device's root node, or a device (backend) name
    NODE = 1
    PROTOCOL = 2
    AUTOMATIC = 3  # a node QEMU named (#block123) that is no device's root


@dataclass(frozen=True)
class Snapshot:
    values: Mapping[Source, tuple[str, ...]] = field(default_factory=dict)
    bitmaps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # node -> bitmap names
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # node -> image files, top first
    labels: Mapping[str, str] = field(default_factory=dict)  # node -> what it is: "root of virtio0" ...
    likely: Mapping[str, Likely] = field(default_factory=dict)
    hmp: HmpHelp = field(default_factory=HmpHelp)  # HMP's commands, in -H mode

    def get(self, source: Source, given: Mapping[str, object] | None = None) -> tuple[str, ...]:
        """The values of ``source``; for a bitmap or an image, those of the node already given."""
        scope = SCOPED_BY.get(source)
        if scope is not None and given:
            node = given.get(scope)
            if isinstance(node, str) and node in self.values.get(Source.NODE, ()):
                table = self.bitmaps if source is Source.BITMAP else self.chains
                return table.get(node, ())
        return self.values.get(source, ())


Query = Callable[[str, Mapping[str, object] | None], Awaitable["JSON"]]


def _names(items: object, key: str) -> list[str]:
    """The ``key`` of each object in ``items``, a reply read without trusting it."""
    if not isinstance(items, list):
        return []
    return [str(i[key]) for i in items if isinstance(i, dict) and i.get(key)]


async def fetch(query: Query) -> Snapshot:
    """Ask QEMU for every live value; a query QEMU lacks just yields nothing."""

    async def ask(command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        try:
            return await query(command, arguments)
        except TransportError:
            return None

    named, block_devices, jobs, block_jobs, exports, peripherals = await asyncio.gather(
        ask("query-named-block-nodes", {"flat": True}), ask("query-block"), ask("query-jobs"),
        ask("query-block-jobs"), ask("query-block-exports"), ask("qom-list", {"path": "/machine/peripheral"}),
    )
    blocks = [b for b in block_devices if isinstance(b, dict)] if isinstance(block_devices, list) else []
    backends = [str(b["device"]) for b in blocks if b.get("device")]
    nodes = cast("list[BlockDeviceInfo]", [n for n in named if isinstance(n, dict) and n.get("node-name")]
                 if isinstance(named, list) else [])
    node_names = [str(n["node-name"]) for n in nodes]
    bitmaps = {str(n["node-name"]): tuple(_names(n["dirty-bitmaps"], "name")) for n in nodes if n.get("dirty-bitmaps")}
    # image files: those of nodes that can have a backing file (neither protocol nodes nor raw)
    by_file = {str(n["file"]): n for n in nodes if n.get("file") and n.get("drv") not in PROTOCOL_DRIVERS | {"raw"}}
    chains = {str(node["node-name"]): _chain(node, by_file) for node in nodes}
    roots: dict[str, str] = {}  # root node -> the device it is the root of
    for block in blocks:  # a backend name stands for its root node
        inserted = block.get("inserted")
        root = inserted.get("node-name") if isinstance(inserted, dict) else None
        if root:
            roots[str(root)] = _device_name(block)
        if block.get("device") and isinstance(root, str) and root in chains:
            chains[str(block["device"])] = chains[root]
            if root in bitmaps:
                bitmaps[str(block["device"])] = bitmaps[root]
    labels, likely = _kinds(nodes, roots, backends)
    children = peripherals if isinstance(peripherals, list) else []
    devices = [str(p["name"]) for p in children if isinstance(p, dict) and str(p.get("type", "")).startswith("child<")]
    all_nodes = tuple(dict.fromkeys(node_names + backends))
    return Snapshot(
        values={
            Source.NODE: all_nodes,
            Source.ROOT: all_nodes,
            Source.JOB: tuple(dict.fromkeys(_names(jobs, "id") + _names(block_jobs, "device"))),
            Source.DEVICE: tuple(devices),
            Source.BLOCK_DEVICE: tuple(dict.fromkeys(_names(blocks, "qdev"))),
            Source.BITMAP: tuple(dict.fromkeys(b for names in bitmaps.values() for b in names)),
            Source.EXPORT: tuple(_names(exports, "id")),
            Source.IMAGE: tuple(by_file),
        },
        bitmaps=bitmaps,
        chains=chains,
        labels=labels,
        likely=likely,
    )


def _device_name(block: Mapping[str, object]) -> str:
    """How the user knows a query-block entry: its backend name, else its qdev id (virtio0 for
    /machine/peripheral/virtio0/virtio-backend)."""
    qdev = str(block.get("qdev") or "")
    if qdev.startswith("/machine/peripheral/"):
        return qdev.split("/")[3]
    return str(block.get("device") or "") or qdev


def _kinds(nodes: list[BlockDeviceInfo], roots: Mapping[str, str],
           backends: list[str]) -> tuple[dict[str, str], dict[str, Likely]]:
    """Each node's label and how likely it fits a device= or node-name= (Likely)."""
    labels: dict[str, str] = {}
    likely: dict[str, Likely] = {}
    for node in nodes:
        name, driver = str(node["node-name"]), str(node.get("drv", ""))
        if name in roots:
            labels[name], likely[name] = f"root of {roots[name]}", Likely.ROOT
        elif driver in PROTOCOL_DRIVERS:
            labels[name], likely[name] = f"protocol node ({driver})", Likely.PROTOCOL
        else:
            labels[name] = Source.NODE.value
            likely[name] = Likely.AUTOMATIC if name.startswith("#") else Likely.NODE
    for name in backends:
        labels[name], likely[name] = "device", Likely.ROOT
    return labels, likely


async def fetch_device_types(query: Query) -> tuple[str, ...] | None:
    """The device types device_add takes: none if the server says it has none (qemu-storage-daemon),
    None if the question failed otherwise (ask again next time)."""
    try:
        types = await query("qom-list-types", {"implements": "device", "abstract": False})
    except CommandError:
        return ()
    except TransportError:
        return None
    return tuple(sorted(_names(types, "name")))


async def fetch_hmp(query: Query) -> HmpHelp | None:
    """HMP's commands and info's subcommands, from its help: none if the server has no HMP
    (qemu-storage-daemon), None if the question failed otherwise (ask again next time)."""
    try:
        commands = await query("human-monitor-command", {"command-line": "help"})
        info = await query("human-monitor-command", {"command-line": "help info"})
    except CommandError:
        return HmpHelp()
    except TransportError:
        return None
    return HmpHelp(parse_help(str(commands)), parse_help(str(info), "info "))


def _chain(node: Mapping[str, object], by_file: Mapping[str, Mapping[str, object]]) -> tuple[str, ...]:
    """The image files of a node's backing chain, top first, followed by file name (``flat`` has no nesting)."""
    chain: list[str] = []
    here = node
    while True:
        name = str(here.get("file") or "")
        if not name or name in chain:
            break
        chain.append(name)
        backing = here.get("backing_file")
        if not backing:
            break
        here = by_file.get(str(backing)) or {"file": backing}
    return tuple(chain)


class Catalog(Subscriber):
    """The current snapshot, and a background refresh that never stacks up and is never starved.

    Asking for a refresh only marks the snapshot stale. One background task fetches while it is
    stale: it waits DEBOUNCE first, so a burst of asks costs one fetch, and asks that come while
    it fetches cost one more fetch after it. Under a steady stream of asks (an event flood) the
    snapshot is still renewed every DEBOUNCE plus one fetch, instead of never.
    """

    DEBOUNCE = 0.05  # seconds: a burst of events costs one refresh

    def __init__(self, query: Query, hmp: bool = False) -> None:
        self._query = query
        self.snapshot = Snapshot()
        self._task: asyncio.Task[None] | None = None
        self._stale = False
        self._device_types: tuple[str, ...] | None = None  # fetched with the first refresh only
        self._hmp_wanted = hmp
        self._hmp: HmpHelp | None = None  # the same
        self.refreshes = 0  # completed refreshes, for tests and the curious

    def refresh(self) -> None:
        """Refresh in the background, after any refresh under way."""
        self._stale = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        while self._stale:
            await asyncio.sleep(self.DEBOUNCE)
            self._stale = False  # asks from here on need the fetch after this one
            snapshot = await fetch(self._query)
            if self._device_types is None:
                self._device_types = await fetch_device_types(self._query)
            if self._hmp_wanted and self._hmp is None:
                self._hmp = await fetch_hmp(self._query)
            self.snapshot = replace(snapshot, values={**snapshot.values, Source.DEVICE_TYPE: self._device_types or ()},
                                    hmp=self._hmp or HmpHelp())
            self.refreshes += 1

    def clear(self) -> None:
        """Forget everything (after a reconnect stale names would mislead)."""
        if self._task is not None:
            self._task.cancel()  # done only once the loop runs again: a refresh() now must not wait for it
            self._task = None
        self._stale = False
        self._device_types = None  # the server may be another QEMU now
        self._hmp = None
        self.snapshot = Snapshot()

    async def settled(self) -> None:
        """Wait for a refresh under way (tests and benchmarks only)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    def on_answered(self, request: Request, reply: Mapping[str, object]) -> None:
        if changes_values(request.command, CHANGING_COMMANDS):
            self.refresh()

    def on_event(self, event: Event) -> None:
        if changes_values(str(event.get("event")), CHANGING_EVENTS):
            self.refresh()

    def on_connection_changed(self) -> None:
        self.clear()
        self.refresh()
