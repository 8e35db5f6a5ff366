"""What replies and errors about lines look like: decided in render, said the same way everywhere."""

from __future__ import annotations

import json

import pytest

from qmpsh.render import Renderer, describe_error
from qmpsh.syntax import ParseError


def test_a_reply_is_json_and_hmp_text_is_text(capsys):
    renderer = Renderer()
    assert renderer.reply({"return": {"status": "running"}})
    assert renderer.reply({"return": "VM status: running\r\n"}, hmp=True)
    assert renderer.reply({"error": {"class": "GenericError", "desc": "x"}}, hmp=True)  # an error stays JSON
    assert not renderer.reply({"return": {"x": float("nan")}})
    assert capsys.readouterr().out.splitlines() == [
        '{"return": {"status": "running"}}', "VM status: running",
        '{"error": {"class": "GenericError", "desc": "x"}}', '{"return": {"x": "NaN"}}']


def test_late_and_ignored_replies_are_notes(capsys):
    renderer = Renderer()
    renderer.late_reply("query-status", 3)
    renderer.ignored_reply({"return": {}, "id": "nobody"})
    renderer.ignored_reply({"error": {"class": "GenericError", "desc": "JSON parse error"}})
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "late reply to query-status (line 3):"
    assert err[1] == 'the server sent a reply with an unknown id, ignored: {"return": {}, "id": "nobody"}'
    assert err[2].startswith("the server sent an error without an id, ignored: {")
    assert json.loads(err[2].split("ignored: ", 1)[1])["error"]["desc"] == "JSON parse error"


@pytest.mark.parametrize(("reply", "said"), [
    ({"error": {"class": "DeviceNotFound", "desc": "no such device"}}, "DeviceNotFound: no such device"),
    ({"error": {"desc": "no class"}}, "Error: no class"),
    ({"error": "text"}, "malformed reply {'error': 'text'}"),
])
def test_describe_error(reply, said):
    assert describe_error(reply) == said


def test_errors_about_a_line_name_it_in_scripts_only(capsys):
    renderer = Renderer()
    renderer.command_error("device_del", {"error": {"class": "DeviceNotFound", "desc": "gone"}}, 4)
    renderer.line_error("query-status", "not sent: nested too deeply", 2)
    renderer.line_error("query-status", "not sent: nested too deeply", None)
    renderer.skipped("JSON form of the cont line above", 5)
    renderer.skipped("JSON form of the cont line above", None)
    assert capsys.readouterr().err.splitlines() == [
        "error: line 4: device_del: DeviceNotFound: gone",
        "error: line 2: query-status: not sent: nested too deeply",
        "error: query-status: not sent: nested too deeply",
        "skipped JSON form of the cont line above (line 5)",
        "skipped JSON form of the cont line above"]


@pytest.mark.parametrize(("script", "lineno", "first"), [
    (True, 1, "error: line 1, column 5: expected key=value, got 'x'"),
    (False, 1, "error: column 5: expected key=value, got 'x'"),  # a typed line: its line is the one on screen
    (False, 2, "error: line 2, column 5: expected key=value, got 'x'"),  # within a paste
])
def test_input_errors_name_the_line_where_it_helps(capsys, script, lineno, first):
    Renderer().input_error(ParseError("expected key=value, got 'x'", "cmd x", 4, lineno), script=script)
    assert capsys.readouterr().err.splitlines()[0] == first
