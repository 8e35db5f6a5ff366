"""Output formatting: valid JSON, colour that strips back to the same JSON."""

from __future__ import annotations

import io
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmpsh.render import Renderer, colour_json, want_colour
from qmpsh.syntax import ParseError

ANSI = re.compile(r"\x1b\[[0-9;]*m")
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(json_value)
def test_colour_only_adds_escapes(value):
    text = json.dumps(value, indent=4)
    assert ANSI.sub("", colour_json(text)) == text


def test_colour_marks_keys_and_values_differently():
    coloured = colour_json('{"a": "b", "n": 1, "t": true}')
    assert coloured.count("\x1b[34;1m") == 3  # keys
    assert "\x1b[32m\"b\"" in coloured and "\x1b[36m1" in coloured and "\x1b[35mtrue" in coloured


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("choice, tty, no_colour, expected", [
    ("always", False, "", True), ("never", True, "", False), ("auto", True, "", True),
    ("auto", False, "", False), ("auto", True, "1", False), ("always", True, "1", True),
])
def test_want_colour(monkeypatch, choice, tty, no_colour, expected):
    if no_colour:
        monkeypatch.setenv("NO_COLOR", no_colour)
    assert want_colour(choice, FakeTty() if tty else io.StringIO()) is expected


def test_documents_are_json_lines_or_indented(capsys):
    Renderer().document({"return": {"a": [1, "é"]}})
    Renderer(pretty=True).document({"return": {}})
    assert capsys.readouterr().out == '{"return": {"a": [1, "é"]}}\n{\n    "return": {}\n}\n'


def test_hmp_text_is_printed_as_text(capsys):
    Renderer().hmp_text("VM status: paused\r\nline 2\r\n")
    Renderer().hmp_text("")
    assert capsys.readouterr().out == "VM status: paused\nline 2\n"


def test_parse_error_has_a_caret(capsys):
    Renderer().parse_error(ParseError("expected key=value, got 'x'", "cmd x", 4, 3), with_line=True)
    assert capsys.readouterr().err == "error: line 3, column 5: expected key=value, got 'x'\n  cmd x\n      ^\n"


@pytest.mark.parametrize("stamp", [
    "abc", 1e300, float("nan"), [1, 2], None,
    {"seconds": "abc", "microseconds": 0}, {"seconds": 1e300, "microseconds": 0}, {"seconds": 10 ** 400},
    {"seconds": float("nan"), "microseconds": 0}, {"seconds": [1], "microseconds": 0},
    {"seconds": 1, "microseconds": "abc"}, {"seconds": 1, "microseconds": float("inf")}, {"seconds": True},
], ids=repr)
@pytest.mark.parametrize("timestamps", ["absolute", "relative"])
def test_an_event_time_that_is_no_time_is_printed_as_given(capsys, stamp, timestamps):
    """At a terminal the time leads the line; a server's timestamp that is no time stays in the event.
    Before, float() or localtime() raised in the middle of reading, and the connection was dropped."""
    event = {"event": "ODD", "data": {}, "timestamp": stamp}
    Renderer(interactive=True, timestamps=timestamps).event(event)
    out = capsys.readouterr().out
    assert out.startswith("{"), out
    printed = json.loads(out)
    assert printed["event"] == "ODD" and "timestamp" in printed


def test_an_event_time_is_shown_before_the_event_to_the_millisecond(capsys):
    Renderer(interactive=True).event({"event": "STOP", "timestamp": {"seconds": 1700000000, "microseconds": 987654}})
    out = capsys.readouterr().out
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\.987\] \{\"event\": \"STOP\"\}\n", out), out
