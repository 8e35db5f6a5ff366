"""The socket reader's JSON decoding: ``json.loads``' answer for every text, by a quicker path for plain lines."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmpsh import client

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8)
SPACE = st.text(alphabet=" \t\r\n", max_size=2)
NOISE = st.text(alphabet='{}[]",:0123456789.-eE truefalsnNaIiy\\', max_size=12)


def outcome(load, text):
    """What ``load`` makes of ``text``: its value, or its error's type and words."""
    try:
        return "value", load(text)
    except (ValueError, RecursionError) as err:
        return type(err).__name__, str(err)


@settings(max_examples=400, deadline=None)
@given(SPACE, JSON_VALUES, SPACE, NOISE)
def test_a_json_value_with_space_or_more_around_it_reads_as_json_loads_reads_it(before, value, after, more):
    for text in (json.dumps(value), before + json.dumps(value) + after, json.dumps(value) + more, more):
        assert outcome(client._loads, text) == outcome(json.loads, text)


@pytest.mark.parametrize("text", ['{"a": 1}', ' {"a": 1}', '{"a": 1} ', '{"a": 1}x', '{"a": NaN}', "", "{",
                                  '{"a": 1}{"b": 2}', '"\\ud800"', "[1]"])
def test_edges_read_as_json_loads_reads_them(text):
    assert outcome(client._loads, text) == outcome(json.loads, text)
