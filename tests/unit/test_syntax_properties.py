"""Hypothesis properties of the parser."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from qmpsh.syntax import ParseError, Reader, Request, format_kv, parse

SEED_LINES = [
    "(QEMU) blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
    "(QEMU) block-stream device=node-D base-node=node-A job-id=job0",
    "(QEMU) drive-mirror device=node-D target=nbd:localhost:49153:exportname=node-TargetDisk sync=top mode=existing job-id=job0",
    '(QEMU) nbd-server-start addr={"type":"inet","data":{"host":"::","port":"49153"}}',
    '(QEMU) blockdev-add driver=qcow2 node-name=node-E file={"driver":"file","filename":"e.qcow2"}',
    '{\n    "execute": "block-job-cancel",\n    "arguments": {\n        "device": "job0"\n    }\n}',
    "transaction(\nblock-dirty-bitmap-add node=drive0 name=bitmap1\n)",
    "/wait BLOCK_JOB_COMPLETED device=job0",
]

tricky_text = st.text(alphabet=st.sampled_from(list("{}[]\"'=.,:\\ \t\n#/-+eE0123456789abc")) | st.characters(),
                      max_size=12)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                      tricky_text)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
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
    assert item.message == {"execute": name, "arguments": arguments}
