"""Types of the JSON qmpsh reads from QEMU: for the type checker only.

Imported under ``TYPE_CHECKING`` (and named in ``cast("...", value)`` strings), never at
run time, so it costs the start-up nothing. The TypedDicts describe what QEMU's QAPI
schema promises for the replies qmpsh reads; a reply is still checked where the code
cannot trust it (``isinstance``), these only say what a well-formed one holds.
Keys are the wire names, so most are declared with TypedDict's functional syntax.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypeAlias, TypedDict

#: Any JSON value as ``json.loads`` gives it.
JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
JSONObject: TypeAlias = "dict[str, JSON]"

# -- query-qmp-schema (qapi/introspect.json) -----------------------------------

SchemaMetaType = Literal["builtin", "enum", "array", "object", "alternate", "command", "event"]

class SchemaInfoMember(TypedDict):
    """A member of an enum (``name``), an object (``name``, ``type``, ``default`` when optional)
    or an alternate (``type``): SchemaInfoEnumMember, SchemaInfoObjectMember and
    SchemaInfoAlternateMember in one, as the schema's readers take them alike."""

    name: NotRequired[str]
    type: NotRequired[str]
    default: NotRequired[JSON]
    features: NotRequired[list[str]]


class SchemaInfoObjectVariant(TypedDict):
    case: str
    type: str


#: SchemaInfo: the common members and, flattened as on the wire, those of each meta-type's
#: branch (json-type: builtin; values, members: enum; element-type: array; members, tag,
#: variants: object; members: alternate; arg-type, ret-type, allow-oob: command; arg-type: event).
SchemaInfo = TypedDict("SchemaInfo", {
    "name": str,
    "meta-type": SchemaMetaType,
    "features": NotRequired[list[str]],
    "json-type": NotRequired[str],
    "values": NotRequired[list[str]],
    "members": NotRequired[list[SchemaInfoMember]],
    "element-type": NotRequired[str],
    "tag": NotRequired[str],
    "variants": NotRequired[list[SchemaInfoObjectVariant]],
    "arg-type": NotRequired[str],
    "ret-type": NotRequired[str],
    "allow-oob": NotRequired[bool],
})

# -- query-jobs, query-block-jobs (qapi/job.json, qapi/block-core.json) ---------

#: JobInfo: one entry of query-jobs.
JobInfo = TypedDict("JobInfo", {
    "id": str,
    "type": str,
    "status": str,
    "current-progress": int,
    "total-progress": int,
    "error": NotRequired[str],
})

class BlockJobInfo(TypedDict):
    """One entry of query-block-jobs (the members qmpsh reads, and a few more)."""

    type: str
    device: str
    len: int
    offset: int
    busy: bool
    paused: bool
    speed: int
    ready: bool
    status: str
    error: NotRequired[str]


# -- query-named-block-nodes (qapi/block-core.json) ---------------------------


class BlockDirtyInfo(TypedDict):
    name: NotRequired[str]
    count: int
    granularity: int


#: BlockDeviceInfo: one entry of query-named-block-nodes (the members qmpsh reads, and a few more).
BlockDeviceInfo = TypedDict("BlockDeviceInfo", {
    "file": str,
    "node-name": str,
    "ro": bool,
    "drv": str,
    "backing_file": NotRequired[str],
    "backing_file_depth": int,
    "encrypted": bool,
    "dirty-bitmaps": NotRequired[list[BlockDirtyInfo]],
})

# -- x-debug-query-block-graph (qapi/block-core.json) -------------------------


class XDbgBlockGraphNode(TypedDict):
    id: int
    type: Literal["block-backend", "block-job", "block-driver"]
    name: str


XDbgBlockGraphEdge = TypedDict("XDbgBlockGraphEdge", {
    "parent": int,
    "child": int,
    "name": str,
    "perm": list[str],
    "shared-perm": list[str],
})


class XDbgBlockGraph(TypedDict):
    nodes: list[XDbgBlockGraphNode]
    edges: list[XDbgBlockGraphEdge]
