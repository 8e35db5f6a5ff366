"""The schema model, coercion and help, against the schema of the real QEMU (fetched at test time)."""

from __future__ import annotations

import json

import pytest

from qmpsh.schema import Schema, SchemaError
from tests.conftest import free_port, run_qmpsh


@pytest.fixture(scope="module")
def schema(qemu_schema: list) -> Schema:
    return Schema(qemu_schema)


def members(schema: Schema, command: str, given: dict | None = None) -> dict:
    return {m.name: m for m in schema.members(schema.arg_type(command), given)}


# -- the model ---------------------------------------------------------------------


def test_commands_events_and_arguments(schema):
    assert {"block-stream", "blockdev-add", "drive-mirror", "query-status"} <= set(schema.commands)
    assert {"BLOCK_JOB_COMPLETED", "JOB_STATUS_CHANGE", "STOP"} <= set(schema.events)
    stream = members(schema, "block-stream")
    assert not stream["device"].optional and stream["job-id"].optional
    assert schema.describe(stream["job-id"].type) == "string"
    assert schema.describe(stream["speed"].type) == "int"
    assert schema.meta(stream["on-error"].type) == "enum"
    assert "stop" in schema.enum_values(stream["on-error"].type)


def test_flat_union_branch_follows_the_discriminator(schema):
    base = members(schema, "blockdev-add")
    assert "driver" in base and "lazy-refcounts" not in base
    qcow2 = members(schema, "blockdev-add", {"driver": "qcow2"})
    assert {"file", "backing", "lazy-refcounts"} <= set(qcow2)
    raw = members(schema, "blockdev-add", {"driver": "raw"})
    assert "lazy-refcounts" not in raw and {"offset", "size"} <= set(raw)
    # file is a BlockdevRef: a node name or an inline object
    assert schema.describe(qcow2["file"].type) == "object or string"
    inner = {m.name: m for m in schema.members_at(schema.arg_type("blockdev-add"), ["file"],
                                                  {"driver": "qcow2", "file": {"driver": "file"}})}
    assert "filename" in inner and schema.describe(inner["filename"].type) == "string"


def test_event_data_members(schema):
    data = {m.name: m for m in schema.members(schema.arg_type("BLOCK_JOB_COMPLETED"))}
    assert {"type", "device", "len", "offset", "speed"} <= set(data)
    assert data["error"].optional and not data["device"].optional


def test_event_names_and_data_keys_are_checked(schema):
    schema.check_event("BLOCK_JOB_COMPLETED", {"device": "job0", "type": "stream"})
    schema.check_event("MEMORY_FAILURE", {"flags": {"recursive": True}})  # nested: MemoryFailureFlags
    for name, data, message in [
        ("BLOCK_JOB_COMPLETE", {}, "unknown event 'BLOCK_JOB_COMPLETE' (did you mean 'BLOCK_JOB_COMPLETED'"),
        ("STOP", {"reason": "x"}, "STOP has no data key 'reason'"),
        ("MEMORY_FAILURE", {"flags": {"recursve": True}},
         "MEMORY_FAILURE has no data key 'flags.recursve' (did you mean 'recursive'?)"),
    ]:
        with pytest.raises(SchemaError) as caught:
            schema.check_event(name, data)
        assert str(caught.value).startswith(message), caught.value


def test_transaction_actions(schema):
    assert {"blockdev-snapshot-sync", "block-dirty-bitmap-add", "abort"} <= set(schema.action_names())
    data = {m.name for m in schema.members(schema.action_type("block-dirty-bitmap-add"))}
    assert {"node", "name", "persistent"} <= data


# -- coercion ------------------------------------------------------------------------


def test_numbers_become_strings_where_strings_are_wanted(schema):
    args = {"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": 10809}}}
    assert schema.coerce_arguments("nbd-server-start", args)["addr"]["data"]["port"] == "10809"


@pytest.mark.parametrize("text, value", [("on", True), ("off", False), ("yes", True), ("no", False),
                                         ("true", True), (True, True)])
def test_booleans(schema, text, value):
    args = {"node": "n", "name": "b", "persistent": text}
    assert schema.coerce_arguments("block-dirty-bitmap-add", args)["persistent"] is value


def test_ints_and_numbers(schema):
    assert schema.coerce_arguments("block-stream", {"device": "d", "speed": "1024"})["speed"] == 1024
    assert schema.coerce_arguments("block-stream", {"device": "d", "speed": "0x400"})["speed"] == 1024
    with pytest.raises(SchemaError, match="'speed' must be an integer"):
        schema.coerce_arguments("block-stream", {"device": "d", "speed": "fast"})


def test_enum_errors_suggest(schema):
    with pytest.raises(SchemaError) as err:
        schema.coerce_arguments("drive-mirror", {"device": "d", "target": "t", "sync": "ful"})
    assert "'sync' must be one of" in str(err.value) and "did you mean 'full'?" in str(err.value)
    assert err.value.path == ("sync",)


def test_unknown_and_missing_arguments(schema):
    with pytest.raises(SchemaError, match=r"unknown argument 'sped' \(did you mean 'speed'\?\)"):
        schema.coerce_arguments("block-stream", {"device": "d", "sped": 1})
    with pytest.raises(SchemaError, match=r"unknown argument 'file\.filenme'") as err:
        schema.coerce_arguments("blockdev-add", {"driver": "qcow2", "node-name": "n",
                                                 "file": {"driver": "file", "filenme": "x"}})
    assert err.value.path == ("file", "filenme")
    with pytest.raises(SchemaError, match="missing required argument 'device'"):
        schema.coerce_arguments("block-stream", {"job-id": "j"})
    with pytest.raises(SchemaError, match=r"unknown command 'block-strem'.*'block-stream'"):
        schema.coerce_arguments("block-strem", {})


def test_alternates_arrays_and_open_commands(schema):
    by_name = schema.coerce_arguments("blockdev-add", {"driver": "qcow2", "node-name": "n", "file": "node-x"})
    assert by_name["file"] == "node-x"
    inline = schema.coerce_arguments("blockdev-add", {"driver": "raw", "node-name": "n",
                                                      "file": {"driver": "file", "filename": "x", "locking": "off"}})
    assert inline["file"]["locking"] == "off"  # an OnOffAuto enum, not a boolean
    actions = [{"type": "block-dirty-bitmap-add", "data": {"node": "n", "name": "b", "persistent": "yes"}}]
    assert schema.coerce_arguments("transaction", {"actions": actions})["actions"][0]["data"]["persistent"] is True
    assert schema.coerce_arguments("device_add", {"driver": "virtio-blk", "drive": "node-A"})["drive"] == "node-A"


# -- against QEMU through qmpsh ------------------------------------------------------


def test_coerced_port_is_accepted_by_qemu(qemu):
    port = free_port()
    line = f"nbd-server-start addr.type=inet addr.data.host=127.0.0.1 addr.data.port={port}\n"
    result = run_qmpsh("-v", qemu.socket, stdin=line)
    assert result.returncode == 0, result.stderr
    sent, reply = map(json.loads, result.stdout.splitlines())
    assert sent["arguments"]["addr"]["data"]["port"] == str(port)
    assert reply == {"return": {}}


def test_no_schema_sends_as_typed(qemu):
    line = f"nbd-server-start addr.type=inet addr.data.host=127.0.0.1 addr.data.port={free_port()}\n"
    result = run_qmpsh("--no-schema", qemu.socket, stdin=line)
    assert result.returncode == 1
    assert "Invalid parameter type" in json.loads(result.stdout)["error"]["desc"]


def test_bad_argument_is_caught_locally_with_a_caret(qemu):
    result = run_qmpsh("-v", qemu.socket, stdin="query-name\nblock-stream device=node-A sped=3\nquery-name\n")
    assert result.returncode == 1
    sent = [json.loads(line) for line in result.stdout.splitlines() if '"execute"' in line]
    assert [s["execute"] for s in sent] == ["query-name", "query-name"]  # nothing sent for line 2
    assert result.stderr.splitlines() == [
        "error: line 2, column 28: unknown argument 'sped' (did you mean 'speed'?) (a leading ! sends it anyway)",
        "  block-stream device=node-A sped=3",
        "                             ^",
    ]


def test_a_line_without_arguments_is_checked_too(qemu):
    script = "query-name\nblok-stream\nquery-stauts\nblock-stream\nquery-name\n"
    result = run_qmpsh("-v", qemu.socket, stdin=script)
    assert result.returncode == 1
    sent = [json.loads(line) for line in result.stdout.splitlines() if '"execute"' in line]
    assert [s["execute"] for s in sent] == ["query-name", "query-name"]  # nothing sent for lines 2-4
    assert result.stderr.splitlines() == [
        "error: line 2, column 1: unknown command 'blok-stream' (did you mean 'block-stream' or 'blockdev-create' or"
        " 'blockdev-close-tray'?) (a leading ! sends it anyway)",
        "  blok-stream",
        "  ^",
        "error: line 3, column 1: unknown command 'query-stauts' (did you mean 'query-stats' or 'query-status' or"
        " 'query-blockstats'?) (a leading ! sends it anyway)",
        "  query-stauts",
        "  ^",
        "error: line 4, column 13: missing required argument 'device' (a leading ! sends it anyway)",
        "  block-stream",
        "              ^",
    ]


@pytest.mark.parametrize("args", [("--no-schema",), ()])
def test_a_line_without_arguments_goes_as_typed_with_bang_or_no_schema(qemu, args):
    line = "blok-stream" if args else "!blok-stream"
    result = run_qmpsh(*args, qemu.socket, stdin=f"{line}\n")
    assert result.returncode == 1 and result.stderr == "error: line 1: blok-stream: CommandNotFound: " \
        "The command blok-stream has not been found\n", result.stderr
    assert json.loads(result.stdout)["error"]["class"] == "CommandNotFound"


def test_commands_sent_without_the_schema_need_no_argument_in_qemu(schema):
    """The bare commands a script sends without loading the schema (its hot path: query-status lines)
    are QEMU commands that need no argument."""
    from qmpsh.session import NO_ARGUMENT_NEEDED

    for name in NO_ARGUMENT_NEEDED:
        assert name in schema.commands, name
        assert schema.coerce_arguments(name, {}) == {}, name


def test_bare_query_status_lines_do_not_load_the_schema(qemu, tmp_path):
    log = tmp_path / "wire.jsonl"
    result = run_qmpsh("-l", str(log), qemu.socket, stdin="query-status\n" * 3 + "cont\nstop\nquit\n")
    assert result.returncode == 0, result.stderr
    sent = [json.loads(line)["message"] for line in log.read_text().splitlines()
            if json.loads(line)["direction"] == "sent"]
    assert [m["execute"] for m in sent] == ["qmp_capabilities"] + ["query-status"] * 3 + ["cont", "stop", "quit"]


def test_bang_sends_anyway(qemu):
    result = run_qmpsh(qemu.socket, stdin="!block-stream device=node-A sped=3\n")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["desc"] == "Parameter 'sped' is unexpected"


def test_raw_json_is_sent_as_written(qemu):
    result = run_qmpsh(qemu.socket, stdin='{"execute": "block-stream", "arguments": {"device": "node-A", "sped": 3}}\n')
    assert json.loads(result.stdout)["error"]["desc"] == "Parameter 'sped' is unexpected"


def test_server_without_schema_still_works(qemu):
    # Before negotiation query-qmp-schema fails: checking is simply off.
    script = "query-name x=1\nqmp_capabilities\nquery-name x=1\n"
    result = run_qmpsh("-N", qemu.socket, stdin=script)
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["error"]["class"] == "CommandNotFound"
    assert out[1] == {"return": {}}
    assert out[2]["error"]["desc"] == "Parameter 'x' is unexpected"  # sent unchecked
    assert "no usable QMP schema" in result.stderr
    assert "Traceback" not in result.stderr


# -- help ------------------------------------------------------------------------------


def test_help_for_blockdev_add_shows_the_qcow2_branch(qemu):
    result = run_qmpsh(qemu.socket, stdin="/help blockdev-add\n")
    assert result.returncode == 0 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "command blockdev-add"
    qcow2 = next(line for line in lines if "[driver=qcow2]" in line)
    assert "lazy-refcounts" in qcow2 and "backing" in qcow2
    driver = next(line for line in lines if line.split()[0] == "driver")
    assert "required" in driver and "qcow2" in driver


def test_help_for_one_branch_and_question_mark_form(qemu):
    result = run_qmpsh(qemu.socket, stdin="/help blockdev-add driver=qcow2\nblock-stream?\n")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stderr.splitlines() if line.startswith("  ")]
    assert {"lazy-refcounts", "file", "backing", "device", "base-node"} <= set(names)
    assert "[driver=raw]" not in result.stderr


def test_help_for_an_event_and_an_unknown_name(qemu):
    result = run_qmpsh(qemu.socket, stdin="/help BLOCK_JOB_COMPLETED\n/help block-strem\n")
    assert result.returncode == 1
    assert "event BLOCK_JOB_COMPLETED" in result.stderr and "  device " in result.stderr
    assert "error: /help: no command or event named 'block-strem' (did you mean 'block-stream'" in result.stderr


def test_help_for_an_event_calls_its_members_data(qemu):
    result = run_qmpsh(qemu.socket, stdin="/help STOP\n/help query-status\n")
    assert result.returncode == 0, result.stderr
    assert "event STOP\n  (no data)\n" in result.stderr
    assert "command query-status\n  (no arguments)\n" in result.stderr
