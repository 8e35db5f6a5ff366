"""HMP's own commands, read from its ``help`` and ``help info`` text, for completion in -H mode.

Pure: the catalog fetches the text once per connection (``human-monitor-command``).
A line of that text starts with a command's names and arguments, then its help:

    block_job_cancel [-f] device -- stop an active background block operation (use -f
    cont|c  -- resume emulation
    info block [-n] [-v] [device] -- show info of one block device or all block devices
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_WORD = re.compile(r"[\w-]+")


@dataclass(frozen=True)
class HmpCommand:
    name: str  # the full name ("cont" of "cont|c")
    args: tuple[str, ...]  # the names of its positional arguments, in order ("device", "size")
    about: str  # the first line of its help


@dataclass(frozen=True)
class HmpHelp:
    commands: Mapping[str, HmpCommand] = field(default_factory=dict)  # by each of their names
    info: Mapping[str, HmpCommand] = field(default_factory=dict)  # info's subcommands


def full_names(table: Mapping[str, HmpCommand]) -> dict[str, str]:
    """The full names in ``table`` (not one-letter aliases), each with its help."""
    return {command.name: command.about for command in table.values()}


def parse_help(text: str, prefix: str = "") -> dict[str, HmpCommand]:
    """The commands in HMP help text, by each of their names; ``prefix`` is ``"info "`` for ``help info``."""
    found: dict[str, HmpCommand] = {}
    for line in text.splitlines():
        if not line.startswith(prefix) or not line[len(prefix):][:1].isalpha():
            continue  # help going on, or an argument list going on ("[file=file][,if=type]")
        head, _, about = line[len(prefix):].partition(" -- ")
        names, *words = head.split()
        aliases = names.split("|")
        args = [word for word in words if not word.lstrip("[").startswith("-")]  # -f and the like are flags
        if args[:1] == aliases[:1]:
            args = args[1:]  # "nbd_server_add nbd_server_add [-w] device [name]"
        command = HmpCommand(max(aliases, key=len), tuple(_name(arg) for arg in args), about.strip())
        for alias in aliases:
            found.setdefault(alias, command)
    return found


def _name(arg: str) -> str:
    """An argument's name as help writes it: ``[speed`` -> speed, ``device|all`` -> device."""
    match = _WORD.search(arg)
    return match.group() if match else ""
