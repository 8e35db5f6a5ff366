"""Line-at-a-time parsing: scripts (``Reader.add_line``) and the prompt's Enter check
(``Continuation``) give what parsing the whole text gives, in time linear in the input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmpsh import syntax
from qmpsh.syntax import Continuation, Reader, needs_more
from tests.unit.test_syntax_properties import SEED_LINES

BUILTINS = {"wait", "help", "quit"}
line_part = st.sampled_from([*SEED_LINES, "transaction(", ")", "abort", "{", "}", "[", "]", '"x": 1,', "# note",
                             "", "  ", "(QEMU) query-status", "<- {\"return\": {}}", "'open", "a=b c=[1,"])
script = st.lists(line_part, max_size=12).map("\n".join)


def described(items: list) -> list:
    return [(type(item).__name__, getattr(item, "lineno", None), str(getattr(item, "message", item)))
            for item in items]


@given(script)
def test_a_script_fed_line_by_line_gives_the_items_of_the_whole(text):
    whole = Reader(BUILTINS).feed(text)
    reader = Reader(BUILTINS)
    items: list = []
    for lineno, line in enumerate(text.split("\n"), 1):
        items += reader.add_line(line + "\n", lineno).items
    assert (reader.end_of_input() is not None) == whole.incomplete
    if not whole.incomplete:
        assert described(items) == described(whole.items)


@given(script, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_the_enter_check_agrees_with_parsing_the_whole_buffer(text, cuts):
    """The buffer as it is at each Enter: growing, and sometimes edited above the last line."""
    check = Continuation()
    for cut in [*sorted(cuts), len(text)]:
        buffer = text[:cut]
        assert check.needs_more(buffer) == needs_more(buffer), buffer
    for cut in cuts:  # edits anywhere: the check starts over
        buffer = text[cut:]
        assert check.needs_more(buffer) == needs_more(buffer), buffer


def transaction_lines(count: int) -> list[str]:
    return ["transaction(", *(f"block-dirty-bitmap-add node=node-A name=b{i}" for i in range(count)), ")"]


def typed_at_the_prompt(count: int) -> None:
    check, buffer = Continuation(), ""
    for line in transaction_lines(count):
        buffer += line
        if not check.needs_more(buffer):
            break
        buffer += "\n"


def fed_by_a_script(count: int) -> None:
    reader = Reader()
    for lineno, line in enumerate(transaction_lines(count), 1):
        reader.add_line(line + "\n", lineno)


@pytest.mark.parametrize("run", [typed_at_the_prompt, fed_by_a_script])
def test_four_times_the_lines_take_four_times_the_work(monkeypatch, run):
    """Lines split into words, counted: quadratic parsing (every line re-parsing all before it) splits
    about 16 times as many for four times the lines. Counts, not seconds: a loaded machine cannot flip
    it. (Not the bracket scan: a plain line, as these are, has nothing to scan.)"""
    scanned: list[str] = []
    real_tokens = syntax.tokens

    def counting_tokens(text: str) -> list[tuple[str, int]]:
        scanned.append(text)
        return real_tokens(text)

    monkeypatch.setattr(syntax, "tokens", counting_tokens)
    run(500)
    small = len(scanned)
    scanned.clear()
    run(2000)
    assert 3.5 * small < len(scanned) < 4.5 * small, (small, len(scanned))


def test_a_script_that_ends_inside_a_continued_shell_line_says_so():
    reader = Reader(BUILTINS)
    reader.add_line("$ qemu-img create -f qcow2 \\\n", 1)
    error = reader.end_of_input()
    assert error is not None and str(error) == "unexpected end of input: a shell line ends with \\"
    reader = Reader(BUILTINS)
    reader.add_line("transaction(\n", 1)
    assert str(reader.end_of_input()) == "unexpected end of input: a bracket or transaction is still open"
