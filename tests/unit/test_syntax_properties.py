"""Hypothesis properties of the parser."""

from __future__ import annotations

import json
import math
import string
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpsh.client import Unsendable, encode
from qmpsh.syntax import ParseError, Reader, Request, format_kv, parse

SEED_LINES = [
    "(QEMU) blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
    "(QEMU) block-stream device=node-D base-node=node-A job-id=job0",
    "(QEMU) drive-mirror device=node-D target=nbd:localhost:49153:exportname=node-TargetDisk sync=top mode=existing "
    "job-id=job0",
    '(QEMU) nbd-server-start addr={"type":"inet","data":{"host":"::","port":"49153"}}',
    '(QEMU) blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}',
    '{\n    "execute": "block-job-cancel",\n    "arguments": {\n        "device": "job0"\n    }\n}',
    "transaction(\nblock-dirty-bitmap-add node=drive0 name=bitmap1\n)",
    "/wait BLOCK_JOB_COMPLETED device=job0",
]

# Text QEMU takes: no surrogates (Cs) nor noncharacters (unassigned, Cn, as U+FFFF is), which the parser refuses.
sendable = st.characters(blacklist_categories=("Cs", "Cn"))
tricky_text = st.text(alphabet=st.sampled_from(list("{}[]\"'=.,:\\ \t\n#/-+eE0123456789abc")) | sendable, max_size=12)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                      tricky_text)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(sendable, max_size=6), inner, max_size=4), max_leaves=12)
key = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=10)
command = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


def check_items(text: str) -> None:
    parsed = Reader({"wait", "help", "quit"}).feed(text)
    for item in parsed.items:
        if isinstance(item, ParseError):
            assert 0 <= item.column <= len(item.source)
            assert item.lineno >= 1


@given(st.text(max_size=200) | st.text(alphabet=st.sampled_from(list("{}[]\"'=.,:\\ \n/()#a1-<>QEMU")), max_size=80))
@settings(max_examples=300)
def test_random_text_never_raises(text):
    check_items(text)


@given(st.sampled_from(SEED_LINES), st.data())
@settings(max_examples=300)
def test_mutated_seed_lines_never_raise(line, data):
    chars = list(line)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(chars)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = data.draw(st.sampled_from(list("{}[]\"'=. ,()\n\\x0")))
        if action == "insert":
            chars.insert(at, ch)
        elif chars and at < len(chars):
            if action == "delete":
                del chars[at]
            else:
                chars[at] = ch
    check_items("".join(chars))


@given(command, st.dictionaries(key, json_value, max_size=6))
def test_kv_rendering_parses_back(name, arguments):
    (item,) = parse(format_kv(name, arguments)).items
    assert isinstance(item, Request)
    assert item.message == ({"execute": name, "arguments": arguments} if arguments else {"execute": name})


# -- what reaches the wire --------------------------------------------------------


def strict_loads(data: bytes) -> object:
    """Parse ``data`` as a strict JSON parser (QEMU's) does: valid UTF-8 and Unicode, no NaN or
    Infinity (nor a number that overflows to it), no duplicate keys; raises ValueError otherwise."""

    def constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    def finite(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError(f"{text} overflows")
        return value

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate keys in {keys}")
        return dict(pairs)

    value = json.loads(data.decode("utf-8"), parse_constant=constant, parse_float=finite, object_pairs_hook=unique)
    text = json.dumps(value, ensure_ascii=False)
    text.encode("utf-8")  # a "\\ud800" escape decodes to a lone surrogate
    if any(0xFDD0 <= ord(char) <= 0xFDEF or ord(char) & 0xFFFE == 0xFFFE for char in text if not char.isascii()):
        raise ValueError("a noncharacter: QEMU refuses it")  # as QEMU's is_valid_codepoint() says
    return value


BIG_INT = "7" * (sys.get_int_max_str_digits() + 1)
hostile_leaf = st.sampled_from([
    "1e999", "-1e999", "1e-999", "1e308", "NaN", "Infinity", "-Infinity", BIG_INT, "-" + BIG_INT, "0x" + "f" * 4000,
    '"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', "'\\ud800'", "'\\ud83d\\ude00'", '"\\u00e9"', '"\udcff"', "\udcff",
    "\ud800", '"é"', "1", "-2.5", "true", "null", '"x"', "'x'", "x", '{"d": 1, "d": 2}', "{'d': 1, 'd': 2}",
    '{"d": 1, "e": 2}', "[]", "{}", '"\\uffff"', '"\\ufdd0"', '"\\ud83f\\udffe"', "'\\uffff'", '"\uffff"', "\ufdef",
])


@st.composite
def hostile_line(draw: st.DrawFn) -> str:
    """A well-formed line (key=value, a JSON or Python value, raw JSON, a transaction, a built-in) around
    values that a lax JSON encoder would send and QEMU refuse; or a random mix of their pieces."""
    leaf = draw(hostile_leaf)
    other = draw(hostile_leaf)
    key = draw(st.sampled_from(["a", "a.b", "a.a", ".".join("k" * 70), "k-" + "x.k" * 3]))
    return draw(st.sampled_from([
        f"cmd {key}={leaf} b={other}",
        f"cmd a=[{leaf}, {other}] a.b=1",
        f'cmd a={{"k": {leaf}, "k": {other}}}',
        f'cmd a={{"k": {leaf}, "j": [{other}]}}',
        f"cmd a={{'k': {leaf}, 'j': {other}}}",
        f'{{"execute": "x", "arguments": {{"k": {leaf}, "j": {other}}}}}',
        f'{{"execute": "x", "arguments": {{"k": {leaf}, "k": {other}}}, "id": {other}}}',
        f'{{"execute": {leaf}, "arguments": {{}}}}',
        f"transaction(\nact {key}={leaf}\nact b={other}\n)",
        f"/wait EV {key}={leaf}",
        "".join(draw(st.lists(hostile_leaf | st.sampled_from([*'{}[]:,"\'=. ', "cmd ", "k="]), max_size=10))),
    ]))


@given(hostile_line() | st.text(max_size=80))
@settings(max_examples=500)
def test_whatever_reaches_the_wire_is_strict_json(text):
    """The parser refuses, with a place, everything the wire encoder would have to refuse; and the
    encoder writes only what a strict parser reads back to the same message."""
    for item in Reader({"wait", "help", "quit"}).feed(text).items:
        if isinstance(item, ParseError):
            assert 0 <= item.column <= len(item.source)
        if not isinstance(item, Request):
            continue
        message = {**item.message, "id": 1}
        data = encode(message)  # Unsendable here: the parser let through what it should have refused
        assert strict_loads(data) == message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "a\ud800", "\udcff", {"k": ["\udc00"]},
                                   "\uffff", "x\ufdd0", "\U0001fffe", "\U0010ffff",
                                   16 ** sys.get_int_max_str_digits(), "x" * (64 << 20), [0] * (1 << 20)],
                         ids=["nan", "inf", "-inf", "surrogate", "byte", "nested-surrogate", "uffff", "ufdd0",
                              "u1fffe", "u10ffff", "long-int", "64-MiB", "2-M-tokens"])
def test_the_encoder_refuses_what_a_strict_parser_would(value):
    """Whatever made it (a schema coercion, a built-in), a value that JSON or UTF-8 cannot carry, or
    a message past QEMU's parser's limits, is never written."""
    with pytest.raises(Unsendable):
        encode({"execute": "x", "arguments": {"v": value}})


def test_the_encoder_writes_up_to_qemus_limits():
    assert len(encode({"execute": "x", "arguments": {"v": [0] * ((1 << 20) - 8)}})) < 3 << 20
