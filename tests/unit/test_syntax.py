"""The parser over every input form, and its errors."""

from __future__ import annotations

import sys

import pytest

from qmpsh.syntax import Builtin, ParseError, Reader, Request, Skipped, format_kv, parse, parse_value

BUILTINS = {"wait", "help", "quit"}


def items(text: str, **kw):
    parsed = parse(text, builtins=BUILTINS, **kw)
    assert not parsed.incomplete
    return parsed.items


def one(text: str, **kw):
    (item,) = items(text, **kw)
    return item


def args(text: str) -> dict:
    item = one(text)
    assert isinstance(item, Request), item
    return item.message["arguments"]


def error(text: str) -> ParseError:
    item = one(text)
    assert isinstance(item, ParseError), item
    return item


# -- key=value ----------------------------------------------------------------


def test_command_with_typed_values():
    assert one("cmd a=1 b.c=x d={\"k\":[1,2]} e=true f=False g=null h=-3").message == {
        "execute": "cmd",
        "arguments": {"a": 1, "b": {"c": "x"}, "d": {"k": [1, 2]}, "e": True, "f": False, "g": None, "h": -3},
    }


def test_command_without_arguments_sends_no_arguments_member():
    # QEMU reads a message one byte per read: the 15 bytes of "arguments":{} cost it ~30 us per command
    assert one("query-block-jobs").message == {"execute": "query-block-jobs"}


def test_values_may_contain_equals_and_colons():
    assert args("drive-mirror target=nbd:localhost:49153:exportname=node-TargetDisk")["target"] == (
        "nbd:localhost:49153:exportname=node-TargetDisk")


def test_quoted_values_are_the_string_inside():
    assert args("""x a="a b" b='x "y"' c="" d='it''s'""") == {"a": "a b", "b": 'x "y"', "c": "", "d": "its"}
    assert args(r'x a="say \"hi\""') == {"a": 'say "hi"'}


def test_quoted_numbers_stay_strings():
    assert args('x port="49153" flag="true"') == {"port": "49153", "flag": "true"}


def test_json_values_may_contain_spaces():
    assert args('x addr={"type": "inet", "data": {"host": "::", "port": "49153"}} l=[1, 2]') == {
        "addr": {"type": "inet", "data": {"host": "::", "port": "49153"}}, "l": [1, 2]}


def test_python_literal_values():
    assert args("x a={'k': True, 'n': None, 'l': [1, -2.5, 'x']} b=[true,false,null]") == {
        "a": {"k": True, "n": None, "l": [1, -2.5, "x"]}, "b": [True, False, None]}


def test_later_dotted_keys_merge_into_the_right_object():
    # qmp-shell put driver=raw inside "file" here.
    assert args("blockdev-add file.driver=file driver=raw file.filename=a.img") == {
        "file": {"driver": "file", "filename": "a.img"}, "driver": "raw"}
    assert args('x file={"driver":"file"} file.filename=a') == {"file": {"driver": "file", "filename": "a"}}
    assert args("x a.b.c=1 a.b.d=2 a.e=3") == {"a": {"b": {"c": 1, "d": 2}, "e": 3}}


def test_hmp_command_line_with_nested_quotes():
    assert args("""human-monitor-command command-line='qemu-io node-A "write -P 0x11 0 1M"'""") == {
        "command-line": 'qemu-io node-A "write -P 0x11 0 1M"'}


def test_bare_words_with_apostrophes_are_strings():
    assert args("x a=it's") == {"a": "it's"}


@pytest.mark.parametrize("text, value", [
    ("12", 12), ("-7", -7), ("1.5", 1.5), ("true", True), ("TRUE", True), ("null", None),
    ("1.2.3", "1.2.3"), ("0x10", "0x10"), ("node-A", "node-A"), ("", ""), ("None", "None"),
])
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


# -- errors: one message, a column, nothing sent --------------------------------


@pytest.mark.parametrize("text, message, column", [
    ("cmd a=1 foo", "expected key=value, got 'foo'", 8),
    ("cmd a=1 a=2", "duplicate key 'a'", 8),
    ("cmd a=1 a.b=2", "'a' is used both as an object and as a value", 8),
    ("cmd a.b=2 a=1", "'a' is used both as an object and as a value", 10),
    ('cmd d={"k":[1,2}', "unexpected '}'", 15),
    ('cmd d={"k" 1}', "invalid JSON value: Expecting ':' delimiter", 11),
    ("cmd =3", "bad key ''", 4),
    ("cmd a..b=3", "bad key 'a..b'", 4),
    ('cmd a="open', "unterminated string", 6),
    ('cmd a="x"y', "a quoted value must end at its closing quote", 6),
    ("/frob x", "unknown built-in '/frob' (built-ins: /help, /quit, /wait)", 0),
    ("device=node-D", "expected a command name before 'device=node-D'", 0),
    ("   ]", "unexpected ']'", 3),
])
def test_errors_point_at_the_column(text, message, column):
    err = error(text)
    assert (err.message, err.column) == (message, column)
    assert err.caret() == f"{text}\n{' ' * column}^"


def test_error_in_multiline_json_points_at_its_line():
    err = error('{"execute": "x",\n "arguments": {"a": 1,}}')
    assert err.lineno == 2
    assert err.source == ' "arguments": {"a": 1,}}'
    assert err.source[err.column] == "}"


def test_error_after_a_prompt_marker_counts_the_marker():
    err = error("    (QEMU) cmd oops")
    assert err.source[err.column:] == "oops"


def test_an_error_does_not_hide_the_lines_around_it():
    kinds = [type(i) for i in items("query-status\ncmd foo\nquery-name")]
    assert kinds == [Request, ParseError, Request]


# -- what QEMU's JSON parser refuses: refused here, at its place ---------------------

DIGITS = sys.get_int_max_str_digits()
BIG = "9" * (DIGITS + 1)  # more digits than Python converts
TOO_LONG = f"integer too long: more than {DIGITS} digits"
INFINITE = "number too large: JSON has no Infinity"
DEEP_KEY = ".".join(["a"] * 3000)


@pytest.mark.parametrize("text, message, column", [
    ("cmd v=1e999", INFINITE, 6),
    ("cmd v=-1e999", INFINITE, 6),
    ('cmd v={"a": [1, 1e999]}', INFINITE, 16),
    ("cmd v={'a': 1e999}", INFINITE, 12),
    ('{"execute": "x", "arguments": {"v": NaN}}', "NaN is not JSON", 36),
    ('{"execute": "x", "arguments": {"v": -Infinity}}', "-Infinity is not JSON", 36),
    ('{"execute": "x", "arguments": {"v": 1e400}}', INFINITE, 36),
    ("cmd v=[1, Infinity]", "Infinity is not JSON", 10),
    ('cmd v="\\ud800"', "lone surrogate \\ud800: not valid Unicode", 6),
    ("cmd v='a\\udc00'", "lone surrogate \\udc00: not valid Unicode", 6),
    ("cmd v=['\\ud83d\\ude00']", "lone surrogate \\ud83d: not valid Unicode", 7),  # Python pairs no escapes
    ('{"execute": "x", "arguments": {"v": ["ok \\ud83d\\ude00", "a\\udc00"]}}',
     "lone surrogate \\udc00: not valid Unicode", 56),
    ('{"execute": "x", "arguments": {"\\ud800": 1}}', "lone surrogate \\ud800: not valid Unicode", 31),
    ("cmd v=a\udcffb", "byte \\xff is not UTF-8", 7),
    ('{"execute": "x\udc80"}', "byte \\x80 is not UTF-8", 14),
    ("cmd v=a\ud800", "lone surrogate \\ud800: not valid Unicode", 7),
    ('{"execute":"query-status","execute":"quit"}', "duplicate key 'execute'", 26),
    ('{"execute": "x", "arguments": {"a": {"b": 1}, "c": 2, "a": 3}}', "duplicate key 'a'", 54),
    ('cmd v={"a": 1, "a": 2}', "duplicate key 'a'", 15),
    ("cmd v={'a': 1, 'a': 2}", "duplicate key 'a'", 15),
    (f"cmd v={BIG}", TOO_LONG, 6),
    (f"cmd v=-{BIG}", TOO_LONG, 6),
    (f"cmd v=[1, {BIG}]", TOO_LONG, 10),
    (f'{{"execute": "x", "arguments": {{"v": {BIG}}}}}', TOO_LONG, 36),
    (f"cmd v=[0x{'f' * DIGITS}]", TOO_LONG, 7),
    (f"cmd {DEEP_KEY}=1", "key nested too deeply: more than 64 levels", 4),
    (f"/wait SHUTDOWN {DEEP_KEY}=1", "key nested too deeply: more than 64 levels", 15),
    ("cmd v=" + "[" * 3000 + "]" * 3000, "nested too deeply: more than 64 levels", 6 + 64),
    ('{"execute": "x", "arguments": ' + "{\"a\": " * 70 + "1" + "}" * 71, "nested too deeply: more than 64 levels",
     30 + 6 * 63),
], ids=lambda v: v[:40] if isinstance(v, str) else None)
def test_what_qemu_would_refuse_is_an_error_at_its_place(text, message, column):
    err = error(text)
    assert (err.message, err.column) == (message, column)


def test_python_strings_and_json_escapes_that_are_valid_unicode_pass():
    assert args('cmd a="\\ud83d\\ude00" b="\\u00e9" c=\'\\U0001f600\' d=["\\ud83d\\ude00"] e=1e308 f=1e-999') == {
        "a": "\U0001f600", "b": "\u00e9", "c": "\U0001f600", "d": ["\U0001f600"], "e": 1e308, "f": 0.0}
    assert args("cmd " + ".".join(["a"] * 64) + "=1") is not None
    assert one("cmd v=" + "[" * 64 + "]" * 64).message["arguments"]["v"] is not None


# -- raw JSON --------------------------------------------------------------------


def test_raw_json_one_line_and_multi_line():
    assert one('{"execute": "query-status"}').message == {"execute": "query-status"}
    text = '{\n    "execute": "block-stream",\n    "arguments": {\n        "device": "node-D"\n    }\n}'
    item = one(text)
    assert item.form == "json" and item.message["arguments"] == {"device": "node-D"}


def test_raw_json_exec_oob_and_id_kept():
    assert one('{"exec-oob": "migrate-pause", "id": "a"}').message == {"exec-oob": "migrate-pause", "id": "a"}


@pytest.mark.parametrize("text, reason", [
    ('{"return": {}}', "pasted reply"),
    ('{"error": {"class": "GenericError", "desc": "x"}}', "pasted error reply"),
    ('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}', "pasted event"),
    ('<- { "return": {} }', "server line"),
    ('<- {"whatever": 1}', "server line"),
])
def test_pasted_server_text_is_skipped(text, reason):
    assert one(text) == Skipped(reason, 1)


def test_json_that_is_not_a_command_is_an_error():
    assert error('{"foo": 1}').message.startswith("a QMP command object needs")
    assert error("[1, 2]").message == "'[1, 2]' is not a command name"
    assert error('{"execute": 3}').message.startswith("a QMP command object needs")


def test_unbalanced_json_waits_for_more_lines():
    assert parse('{"execute": "x",').incomplete
    assert parse('cmd a={"k": [1,').incomplete
    assert not parse('{"execute": "x"}').incomplete


# -- documentation paste ---------------------------------------------------------


def test_prompts_and_markers_are_stripped():
    assert one("(QEMU) query-status").message == {"execute": "query-status"}
    assert one("    (QEMU) query-status").from_prompt
    assert one('-> { "execute": "query-status" }').message == {"execute": "query-status"}
    assert one("TRANS> query-status").message["execute"] == "query-status"


def test_qapi_doc_example_with_multi_line_request_and_reply():
    text = """-> { "execute": "block-stream",
     "arguments": { "device": "virtio0",
                    "base-node": "node-A" } }
<- { "return": {
       "x": 1 } }
"""
    request, skipped = items(text)
    assert request.message == {"execute": "block-stream", "arguments": {"device": "virtio0", "base-node": "node-A"}}
    assert skipped == Skipped("server line", 4)


def test_doc_echo_runs_once():
    text = """(QEMU) block-stream device=node-D job-id=job0
{
    "execute": "block-stream",
    "arguments": {
        "device": "node-D",
        "job-id": "job0"
    }
}
"""
    request, skipped = Reader(BUILTINS).feed(text).items
    assert request.form == "kv"
    assert isinstance(skipped, Skipped) and skipped.reason == "JSON form of the block-stream line above"


def test_doc_echo_with_different_arguments_says_so():
    reader = Reader(BUILTINS)
    reader.feed("(QEMU) nbd-server-add device=node-TargetDisk writable=true")
    (skipped,) = reader.feed('{"execute": "nbd-server-add", "arguments": {"device": "node-TargetDisk"}}').items
    assert "arguments differ" in skipped.reason


def test_json_after_a_typed_line_still_runs():
    reader = Reader(BUILTINS)
    reader.feed("query-status")  # typed, no "(QEMU) " prompt: not a doc paste
    (item,) = reader.feed('{"execute": "query-status"}').items
    assert isinstance(item, Request)


def test_json_for_another_command_is_not_an_echo():
    reader = Reader(BUILTINS)
    assert [type(i) for i in reader.feed('(QEMU) stop\n{"execute": "cont"}').items] == [Request, Request]


def test_shell_lines_and_comments():
    assert items("# a comment\n\n   \n") == []


# -- transactions ----------------------------------------------------------------


def test_multi_line_transaction():
    text = ("transaction(\nblock-dirty-bitmap-add node=drive0 name=bitmap1\n"
            "TRANS> block-dirty-bitmap-clear node=drive0 name=bitmap0\n)")
    assert one(text).message == {"execute": "transaction", "arguments": {"actions": [
        {"type": "block-dirty-bitmap-add", "data": {"node": "drive0", "name": "bitmap1"}},
        {"type": "block-dirty-bitmap-clear", "data": {"node": "drive0", "name": "bitmap0"}},
    ]}}


def test_one_line_transaction():
    assert one("transaction( block-dirty-bitmap-add node=drive0 name=bitmap1 )").message["arguments"] == {
        "actions": [{"type": "block-dirty-bitmap-add", "data": {"node": "drive0", "name": "bitmap1"}}]}


def test_open_transaction_waits_for_more():
    assert parse("transaction(\nabort").incomplete
    assert not parse("transaction(\nabort\n)").incomplete


def test_bad_action_fails_the_whole_transaction():
    err = one("transaction(\nabort\nx oops\n)")
    assert isinstance(err, ParseError) and err.lineno == 3


# -- built-ins and HMP -------------------------------------------------------------


def test_builtin_words_and_arguments():
    assert one("/wait BLOCK_JOB_COMPLETED device=job0 timeout=5") == Builtin(
        "wait", ("BLOCK_JOB_COMPLETED",), {"device": "job0", "timeout": 5}, 1)


def test_hmp_lines():
    item = one("info block -v", hmp=True)
    assert item.message == {"execute": "human-monitor-command", "arguments": {"command-line": "info block -v"}}
    assert isinstance(one("/quit", hmp=True), Builtin)


def test_format_kv_quotes_what_needs_it():
    line = format_kv("x", {"a": "a b", "b": "12", "c": 12, "d": {"k": [1]}, "e": "plain", "f": ""})
    assert line == 'x a="a b" b="12" c=12 d={"k":[1]} e=plain f=""'
    assert one(line).message["arguments"] == {"a": "a b", "b": "12", "c": 12, "d": {"k": [1]}, "e": "plain", "f": ""}


def test_a_pasted_shell_command_is_skipped_with_the_line_that_runs_it():
    (item,) = parse("$ qemu-img create -f qcow2 e.qcow2 39M").items
    assert item == Skipped("shell command: '/shell qemu-img create -f qcow2 e.qcow2 39M' runs it", 1)


def test_a_pasted_shell_command_continues_after_a_backslash():
    text = "$ qemu-img create -f qcow2 -b ./Contents-of-A-B-C.qcow2 \\\n    -F qcow2 ./target-disk.qcow2\nquery-status"
    skipped, request = parse(text).items
    assert skipped == Skipped("shell command: '/shell qemu-img create -f qcow2 -b ./Contents-of-A-B-C.qcow2 "
                              "-F qcow2 ./target-disk.qcow2' runs it", 1)
    assert isinstance(request, Request) and request.command == "query-status" and request.lineno == 3
    assert parse("$ qemu-img create \\").incomplete


def test_shell_takes_the_rest_of_its_line_as_it_is():
    (item,) = parse("/shell qemu-img create -o size=1M,cluster_size=4k x.qcow2 'a b'", builtins={"shell"}).items
    assert item == Builtin("shell", text="qemu-img create -o size=1M,cluster_size=4k x.qcow2 'a b'")


def test_format_kv_quotes_strings_that_would_read_as_numbers_it_cannot_send():
    line = format_kv("x", {"a": "1e999", "b": BIG})
    assert line == f'x a="1e999" b="{BIG}"'
    assert one(line).message["arguments"] == {"a": "1e999", "b": BIG}


def test_a_shell_line_is_not_scanned_for_brackets():
    """'/shell echo {' is for sh: it neither opens an input that swallows the next lines nor is a parse error."""
    shell, request = parse("/shell echo {\nquery-status", builtins={"shell"}).items
    assert shell == Builtin("shell", text="echo {")
    assert isinstance(request, Request) and request.command == "query-status"
    assert parse("/shell echo ]", builtins={"shell"}).items == [Builtin("shell", text="echo ]")]
