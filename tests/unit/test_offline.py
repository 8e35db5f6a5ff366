"""The pure modules against what QEMU 7.2 really says (tests/data, made by tests/data/capture.py):
schema checking and coercion, /tree's graph and chains, /wait's window for a reused job id,
/job's ending rule, and what completion wants at the cursor. No QEMU runs here."""

from __future__ import annotations

import asyncio

import pytest

from qmpsh import completion
from qmpsh.events import EventLog, event_filter
from qmpsh.jobs import ending, failure
from qmpsh.schema import Schema, SchemaError
from qmpsh.tree import build, chain
from tests.data import load


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema(load("qmp-schema"))  # type: ignore[arg-type]


# -- the schema --------------------------------------------------------------------------------

def test_values_are_coerced_to_the_types_qemu_asks_for(schema):
    args = schema.coerce_arguments("block-stream", {"device": 123, "job-id": "job0", "speed": "8M",
                                                    "auto-finalize": "off"})
    assert args == {"device": "123", "job-id": "job0", "speed": 8 * 1024 * 1024, "auto-finalize": False}


def test_a_flat_union_branch_is_checked_by_its_discriminator(schema):
    args = schema.coerce_arguments("blockdev-add", {"driver": "qcow2", "node-name": "node-E",
                                                    "file": {"driver": "file", "filename": "e.qcow2"}})
    assert args["file"] == {"driver": "file", "filename": "e.qcow2"}
    with pytest.raises(SchemaError, match="did you mean 'filename'") as err:
        schema.coerce_arguments("blockdev-add", {"driver": "qcow2", "node-name": "n",
                                                 "file": {"driver": "file", "filname": "e.qcow2"}})
    assert err.value.path == ("file", "filname")


@pytest.mark.parametrize(("command", "args", "message"), [
    ("block-stream", {"devce": "node-D"}, "did you mean 'device'"),
    ("block-stream", {}, "device"),
    ("drive-backup", {"device": "node-A", "target": "e.qcow2", "sync": "fulll"}, "'full'"),
    ("blok-stream", {}, "did you mean 'block-stream'"),
])
def test_mistakes_are_named(schema, command, args, message):
    with pytest.raises(SchemaError, match=message):
        schema.coerce_arguments(command, args)


def test_events_and_their_data_keys_are_known(schema):
    schema.check_event("BLOCK_JOB_COMPLETED", {"device": "job0"})
    with pytest.raises(SchemaError, match="did you mean 'device'"):
        schema.check_event("BLOCK_JOB_COMPLETED", {"devce": "job0"})
    with pytest.raises(SchemaError, match="BLOCK_JOB_COMPLETED"):
        schema.check_event("BLOCK_JOB_COMPLETE", {})


def test_block_drivers_come_from_blockdev_adds_branches(schema):
    assert {"qcow2", "raw", "file", "nbd", "copy-on-read"} <= set(schema.block_drivers())


# -- /tree ---------------------------------------------------------------------------------------

def tree(stage: str) -> list:
    return build(load(f"block-graph-{stage}"), load(f"named-block-nodes-{stage}"))  # type: ignore[arg-type]


def root_of(roots: list) -> object:
    (device,) = [r for r in roots if r.driver == "block-backend"]
    return next(c for c in device.children if c.edge == "root")


def test_the_documents_chain():
    root = root_of(tree("chain"))
    assert (root.name, root.driver, root.filename) == ("node-D", "qcow2", "d.qcow2")
    assert chain(root) == ["node-A", "node-B", "node-C", "node-D"]


def test_a_stream_puts_a_filter_on_top_and_leaves_the_chain_as_it_is():
    root = root_of(tree("stream"))
    assert root.driver == "copy-on-read" and root.name.startswith("#block")
    assert chain(root) == ["node-A", "node-B", "node-C", "node-D"]


def test_after_a_full_stream_the_top_stands_alone():
    assert chain(root_of(tree("streamed"))) == ["node-D"]


# -- /wait and /job with job0 used twice ---------------------------------------------------------

EVENTS = load("events-job0-twice")
SECOND = max(i for i, e in enumerate(EVENTS) if e["data"].get("status") == "created")  # the backup's creation


def test_wait_takes_the_second_jobs_end_not_the_firsts():
    async def run() -> dict:
        log = EventLog()
        for event in EVENTS[:SECOND + 1]:  # the stream's end, then the backup's creation
            log.add(event)
        waiting = asyncio.ensure_future(log.wait(event_filter("BLOCK_JOB_COMPLETED", {"device": "job0"}), 5))
        await asyncio.sleep(0)
        assert not waiting.done()  # the stream's BLOCK_JOB_COMPLETED no longer counts
        for event in EVENTS[SECOND + 1:]:
            log.add(event)
        return await waiting

    assert asyncio.run(run())["data"]["type"] == "backup"


def test_job_ends_on_its_completion_and_not_on_a_status_in_between():
    ends = ending("job0")
    enders = [e for e in EVENTS[SECOND:] if ends(e)]
    assert [e["event"] for e in enders] == ["BLOCK_JOB_COMPLETED", "JOB_STATUS_CHANGE"]
    assert enders[1]["data"]["status"] == "concluded"
    assert failure(enders[0], load("jobs-stream")[0]) is None  # type: ignore[index]
    assert not ending("job1")(enders[0])


def test_a_ready_followed_by_the_jobs_end_is_stale():
    ready = {"event": "BLOCK_JOB_READY", "data": {"device": "job0", "type": "mirror"}}
    done = {"event": "BLOCK_JOB_COMPLETED", "data": {"device": "job0", "type": "mirror"}}
    assert ending("job0", [ready])(ready)
    assert not ending("job0", [ready, done])(ready)


# -- completion: what is wanted at the cursor -----------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("block-s", completion.CommandName("block-s")),
    ("block-stream dev", completion.ArgName("block-stream", "dev")),
    ("block-stream device=no", completion.ArgValue("block-stream", "device", "no")),
    ("blockdev-add driver=qcow2 file.dri", completion.ArgName("blockdev-add", "file.dri", {"driver": "qcow2"})),
    ("/wait BLOCK_JOB_C", completion.EventName("BLOCK_JOB_C")),
    ('{"execute": "query-status",\n', completion.Nothing()),
])
def test_what_is_wanted_at_the_cursor(text, expected):
    assert completion.wanted(text) == expected
