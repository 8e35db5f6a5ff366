"""The config file in a real scripted run: its values apply, options given on the command line win."""

from __future__ import annotations

import json

from tests.conftest import run_qmpsh, write_config


def test_pretty_from_the_config_file_and_no_pretty_over_it(qemu):
    write_config("pretty = true\n")

    result = run_qmpsh(qemu.socket, stdin="query-status\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{\n"), result.stdout  # indented
    assert json.loads(result.stdout)["return"]["status"] == "prelaunch"

    result = run_qmpsh("--no-pretty", qemu.socket, stdin="query-status\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and json.loads(result.stdout)["return"]["status"] == "prelaunch"


def test_a_broken_config_file_stops_before_connecting(qemu):
    path = write_config("pretty = true\ncolor = \n")
    result = run_qmpsh(qemu.socket, stdin="query-status\n")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"qmpsh: {path}:2:9: not valid TOML: invalid value\n"
