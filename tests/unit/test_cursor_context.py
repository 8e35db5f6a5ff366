"""The cursor's context: what ``syntax`` says the input before the cursor is, which the completer,
the highlighter and the prompt read instead of each parsing the input their own way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pygments.token import Generic

from qmpsh import completion, syntax
from qmpsh.lexer import QmpLexer
from qmpsh.syntax import MARKERS, At, Context, Continuation, cursor_context

TRANSACTION = "transaction(\nblock-dirty-bitmap-add node=node-A name=b0\n"
SPACED_KEY = 'blockdev-add file={"a b": 1} driver=qcow2 node-name=x '  # a JSON value with a space in a key

CONTEXTS = [
    ("", Context(False, At.COMMAND)),
    ("block-s", Context(False, At.COMMAND, prefix="block-s")),
    ("!blo", Context(False, At.COMMAND, force=True, prefix="blo")),
    ("(QEMU) block-stream dev", Context(False, At.KEY, "(QEMU)", words=("block-stream",), path="dev", prefix="dev")),
    ("(qemu) block-stream device=no",
     Context(False, At.VALUE, "(qemu)", words=("block-stream",), path="device", prefix="no")),
    ("!block-stream device=", Context(False, At.VALUE, force=True, words=("block-stream",), path="device")),
    ("(QEMU)", Context(False, At.COMMAND, "(QEMU)")),
    ('-> {"execute": "query-status", ', Context(True, At.JSON, "->", prefix='{"execute": "query-status", ')),
    ('<- {"return": {}}', Context(False, marker="<-")),
    ("$ qemu-img create -f qcow2 e.qcow2 39M", Context(False, marker="$")),
    ("$ qemu-img create \\\n-f q", Context(False)),  # the shell line goes on, and ends here
    ("# a note", Context(False)),
    # dotted keys
    ("blockdev-add driver=qcow2 file.driver=file file.fi",
     Context(False, At.KEY, words=("blockdev-add", "driver=qcow2", "file.driver=file"), path="file.fi",
             prefix="file.fi", given={"driver": "qcow2", "file": {"driver": "file"}})),
    ("nbd-server-start addr.type=inet addr.data.host=",
     Context(False, At.VALUE, words=("nbd-server-start", "addr.type=inet"), path="addr.data.host",
             given={"addr": {"type": "inet"}})),
    # values the user writes: JSON (also over several lines) and quoted strings
    ('blockdev-add file={"driver": ', Context(True, At.JSON, words=("blockdev-add",), path="file",
                                              prefix='{"driver": ')),
    ('blockdev-add file={"dri', Context(False, At.JSON, words=("blockdev-add",), path="file", prefix='{"dri')),
    ('blockdev-add file={\n"driver": ', Context(True, At.JSON)),
    ("x a='quo", Context(False, At.JSON, words=("x",), path="a", prefix="'quo")),
    ('{"execute": "cont"', Context(True, At.JSON, prefix='{"execute": "cont"')),
    # transactions: on one line, over several lines, with pasted prompts, closed
    ("transaction(", Context(True)),
    ("transaction( abort ", Context(True, At.KEY, transaction=True, words=("abort",))),
    ("transaction(\n", Context(True, At.COMMAND, transaction=True)),
    (TRANSACTION + "blockdev-backup dev",
     Context(True, At.KEY, transaction=True, words=("blockdev-backup",), path="dev", prefix="dev")),
    ("(QEMU) transaction(\nTRANS> blockdev-snapshot-s",
     Context(True, At.COMMAND, "TRANS>", transaction=True, prefix="blockdev-snapshot-s")),
    (TRANSACTION + ") ", Context(False)),
    (TRANSACTION + ")\nquery-st", Context(False, At.COMMAND, prefix="query-st")),
    ("query-status\ntransaction(\nabo", Context(True, At.COMMAND, transaction=True, prefix="abo")),
    # built-ins
    ("/wai", Context(False, At.BUILTIN, prefix="wai")),
    ("/wait BLOCK_JOB_C", Context(False, At.KEY, words=("/wait",), path="BLOCK_JOB_C", prefix="BLOCK_JOB_C")),
    ("/wait BLOCK_JOB_COMPLETED device=", Context(False, At.VALUE, words=("/wait", "BLOCK_JOB_COMPLETED"),
                                                   path="device")),
    ("/wait BLOCK_JOB_COMPLETED device=job0 ty",
     Context(False, At.KEY, words=("/wait", "BLOCK_JOB_COMPLETED", "device=job0"), path="ty", prefix="ty",
             given={"device": "job0"})),
    ("/help blockdev-add driver=qcow2 fi",
     Context(False, At.KEY, words=("/help", "blockdev-add", "driver=qcow2"), path="fi", prefix="fi",
             given={"driver": "qcow2"})),
    # arguments read leniently: a bare word, a duplicate and a clash are left out, and nothing of them leaks in
    ('x driver=qcow2 driver=raw bare a={"b": 1} a={"c": 2, "b": 3} ',
     Context(False, At.KEY, words=("x", "driver=qcow2", "driver=raw", "bare", 'a={"b": 1}', 'a={"c": 2, "b": 3}'),
             given={"driver": "qcow2", "a": {"b": 1}})),
    (SPACED_KEY, Context(False, At.KEY, words=("blockdev-add", 'file={"a b": 1}', "driver=qcow2", "node-name=x"),
                         given={"file": {"a b": 1}, "driver": "qcow2", "node-name": "x"})),
]

HMP_CONTEXTS = [
    ("info bl", Context(False, At.WORD, words=("info",), prefix="bl")),
    ("(qemu) block_resize ", Context(False, At.WORD, "(qemu)", words=("block_resize",))),
    ("", Context(False, At.WORD)),
    ("/wait ", Context(False, At.KEY, words=("/wait",))),
    ("$ ls", Context(False, marker="$")),
]


@pytest.mark.parametrize(("text", "expected"), CONTEXTS)
def test_the_context_at_the_cursor(text, expected):
    assert cursor_context(text) == expected


@pytest.mark.parametrize(("text", "expected"), HMP_CONTEXTS)
def test_the_context_at_the_cursor_of_an_hmp_line(text, expected):
    assert cursor_context(text, hmp=True) == expected


def test_a_json_value_with_a_space_in_a_key_keeps_the_arguments_after_it():
    """Arguments typed after it are still known: they are not offered again, and their values pick
    the branch of a union. Completion used to drop every word after such a value."""
    assert completion.wanted(SPACED_KEY) == completion.ArgName(
        "blockdev-add", "", {"file": {"a b": 1}, "driver": "qcow2", "node-name": "x"})


@pytest.mark.parametrize(("text", "expected"), [
    ("/wait BLOCK_JOB_COMPLETED device=job0 ty",
     completion.EventKey("BLOCK_JOB_COMPLETED", "ty", {"device": "job0"})),
    ("/help blockdev-add driver=qcow2 fi", completion.ArgName("blockdev-add", "fi", {"driver": "qcow2"})),
    ("/help block-st", completion.HelpTopic("block-st")),
    ("/connect vm", completion.DomainName("vm")),
    ("/connect vm ", completion.Nothing()),
    ("/wait BLOCK_JOB_COMPLETED device=", completion.Nothing()),
    ("transaction(\nblockdev-backup sync=f", completion.ArgValue("blockdev-backup", "sync", "f", action=True)),
    ("transaction(\n/wa", completion.CommandName("/wa", action=True)),
    ("$ block-st", completion.Nothing()),
    ("# block-st", completion.Nothing()),
])
def test_what_completion_wants_comes_from_the_context(text, expected):
    assert completion.wanted(text) == expected


texts = st.lists(st.sampled_from(["transaction(", ")", "{", "}", "x a=1", "(QEMU) ", "TRANS> ", "$ a \\", "\n", " ",
                                  "/wait E d=", "b.c=", "# n", '"', "!"]), max_size=12).map("".join)


@given(st.lists(texts, min_size=1, max_size=6))
def test_the_context_does_not_depend_on_what_was_asked_before(asked):
    """cursor_context keeps the lines above the cursor's between calls: the answer is the same as
    a fresh parse's, after any texts asked before, growing or not."""
    for text in asked:
        for grown in (text, text + "\n", text + "\nx "):
            assert cursor_context(grown) == Continuation().context(grown), grown


@pytest.mark.parametrize("marker", list(MARKERS))
def test_the_highlighter_marks_every_marker_the_parser_reads(marker):
    for text in (f"{marker} query-status", f"  {marker} query-status", marker):
        first = next((kind, value) for kind, value in QmpLexer().get_tokens(text) if value.strip())
        assert first == (Generic.Prompt, marker), text


def test_completion_on_a_long_line_reads_each_word_once(monkeypatch):
    """Values parsed, counted: four times the words take four times the work (reading the arguments
    again for every word, as completion once did, takes sixteen). Counts, not seconds: a loaded
    machine cannot flip it."""
    parsed: list[str] = []
    real_parse_value = syntax.parse_value

    def counting_parse_value(text: str) -> object:
        parsed.append(text)
        return real_parse_value(text)

    monkeypatch.setattr(syntax, "parse_value", counting_parse_value)

    def count(words: int) -> int:
        parsed.clear()
        line = "blockdev-add " + " ".join(f"k{i}.x=node-{i}" for i in range(words)) + " "
        assert completion.wanted(line) == completion.ArgName("blockdev-add", "", {f"k{i}": {"x": f"node-{i}"}
                                                                                   for i in range(words)})
        return len(parsed)

    small, large = count(500), count(2000)
    assert 3.5 * small < large < 4.5 * small, (small, large)
