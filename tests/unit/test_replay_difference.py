"""How a replayed reply differs from the recorded one (offline)."""

from __future__ import annotations

import pytest

from qmpsh.replay import difference

ERROR = {"error": {"class": "GenericError", "desc": "no"}}


@pytest.mark.parametrize("recorded, now, said", [
    ({"return": {}}, {"return": {}}, None),
    ({"return": {"a": 1}}, {"return": {"a": 2}}, None),  # values may differ: sizes, times, offsets
    (ERROR, {"error": {"class": "GenericError", "desc": "other words"}}, None),
    ({"return": {}}, ERROR, "error GenericError, recorded return"),
    (ERROR, {"return": {}}, "return, recorded error GenericError"),
    (ERROR, {"error": {"class": "DeviceNotFound", "desc": "no"}}, "error DeviceNotFound, recorded error GenericError"),
    ({"return": {"a": 1, "b": 2}}, {"return": {"a": 1, "c": 3}}, "returned without b; with c"),
    ({"return": {"a": 1}}, {"return": {"a": 1, "c": 3}}, "returned with c"),
    ({"return": [1, 2]}, {"return": [1]}, "returned 1 entries, recorded 2"),
    ({"return": []}, {"return": {}}, "returned dict, recorded list"),
])
def test_difference(recorded, now, said):
    assert difference(recorded, now) == said
