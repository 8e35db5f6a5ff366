"""``/tree``: every block device's graph of nodes, and its backing chain ``[A] <- [B]``.

The graph comes from ``x-debug-query-block-graph`` (parents, children and
edge names) and each node's driver and file from ``query-named-block-nodes``.
A protocol node under a format node (qcow2's ``file`` child) is shown as the
format node's file name rather than as a node of its own.

Block jobs and anonymous block backends (a job's or an export's own handle
on a node) are not devices: they are not shown as trees, and a node they
alone use is shown as a tree of its own. The chain is the backing chain of
images: filter nodes a job inserts (``copy-on-read`` during a stream,
``mirror_top``, ``commit_top``) are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from qmpsh.syntax import Builtin
from qmpsh.transport import TransportError
from qmpsh.views import BlockTrees, TreeJSON

if TYPE_CHECKING:
    from qmpsh.jsontypes import BlockDeviceInfo, XDbgBlockGraph
    from qmpsh.session import Session

PROTOCOL_DRIVERS = {"file", "host_device", "host_cdrom", "nbd", "nvme", "null-co", "null-aio", "iscsi", "rbd",
                    "ssh", "http", "https", "ftp", "ftps", "gluster", "nfs"}
#: Filter drivers, and the edge to the one node each of them filters.
FILTER_DRIVERS = {"copy-on-read": "file", "mirror_top": "backing", "commit_top": "backing", "throttle": "file",
                  "preallocate": "file", "compress": "file", "blkdebug": "image", "blklogwrites": "file",
                  "copy-before-write": "file", "replication": "file"}


@dataclass
class Node:
    name: str
    driver: str = ""
    filename: str = ""
    edge: str = ""  # how its parent refers to it: root, backing, file, target ...
    children: list[Node] = field(default_factory=list)

    def as_json(self) -> TreeJSON:
        out: TreeJSON = {"node-name": self.name, "driver": self.driver, "file": self.filename}
        if self.edge:
            out["edge"] = self.edge
        if self.children:
            out["children"] = [c.as_json() for c in self.children]
        return out


def chain(root: Node) -> list[str]:
    """Node names from the base up to the active layer, following backing edges and skipping filters."""
    names = []
    node: Node | None = root
    while node is not None:
        filtered = FILTER_DRIVERS.get(node.driver)
        if filtered is None:
            names.append(node.name)
        node = next((c for c in node.children if c.edge == (filtered or "backing")), None)
    return names[::-1]


def _is_device_or_node(raw: Mapping[str, object]) -> bool:
    """A named block backend (a device) or a node; not a block job nor an anonymous backend."""
    kind = raw.get("type")
    return kind == "block-driver" or (kind == "block-backend" and bool(raw.get("name")))


def build(graph: XDbgBlockGraph, named: list[BlockDeviceInfo]) -> list[Node]:
    """The trees of a block graph (x-debug-query-block-graph) with the nodes' details
    (query-named-block-nodes): one per block backend, then nodes no one uses."""
    info = {str(n.get("node-name")): n for n in named}
    nodes = {int(n["id"]): n for n in graph.get("nodes", [])}
    edges = graph.get("edges", [])
    children: dict[int, list[tuple[str, int]]] = {}
    has_parent: set[int] = set()
    for edge in edges:
        children.setdefault(int(edge["parent"]), []).append((str(edge["name"]), int(edge["child"])))
        if _is_device_or_node(nodes.get(int(edge["parent"]), {})):
            has_parent.add(int(edge["child"]))

    def make(node_id: int, edge: str, seen: frozenset[int]) -> Node:
        raw: Mapping[str, object] = nodes.get(node_id, {})
        name = str(raw.get("name", node_id))
        details: Mapping[str, object] = info.get(name, {})
        node = Node(name, str(details.get("drv", raw.get("type", ""))), str(details.get("file", "")), edge)
        for child_edge, child_id in children.get(node_id, []):
            if child_id in seen:
                continue
            child = make(child_id, child_edge, seen | {child_id})
            if child_edge == "file" and child.driver in PROTOCOL_DRIVERS and not child.children:
                node.filename = node.filename or child.filename
                continue
            node.children.append(child)
        return node

    backends = [i for i, n in nodes.items() if n.get("type") == "block-backend" and _is_device_or_node(n)]
    orphans = [i for i, n in nodes.items() if n.get("type") == "block-driver" and i not in has_parent]
    return [make(i, "", frozenset({i})) for i in backends + orphans]


async def show_tree(session: Session, cmd: Builtin) -> bool:
    """Draw the block graph (a JSON list in scripts), each tree with its backing chain."""
    try:
        graph, named = await asyncio.gather(session.query("x-debug-query-block-graph"),
                                            session.query("query-named-block-nodes", {"flat": True}))
    except TransportError as err:
        session.renderer.error(f"/tree: {err}")
        return False
    roots = build(cast("XDbgBlockGraph", graph), cast("list[BlockDeviceInfo]", named))
    session.renderer.show(BlockTrees([{**r.as_json(), "chain": chain(_active(r))} for r in roots]))
    return True


def _active(root: Node) -> Node:
    """A backend's root child (the active layer), or the node itself."""
    return next((c for c in root.children if c.edge == "root"), root)
