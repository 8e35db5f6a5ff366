"""qmpsh(1), written from the argument parser that ``--help`` prints.

``python -m qmpsh.manpage`` writes the page (roff) to stdout. Options come
from ``build_parser()``; input, exit status, environment and files from the
sections ``--help`` prints after the options; the config file's keys and
their defaults from the parser too. Nothing here repeats what the options
say, so the page cannot drift from ``--help``. The repository keeps a copy in
``qmpsh/qmpsh.1`` (installed as ``share/man/man1/qmpsh.1``); a test checks
that it is current. ``SOURCE_DATE_EPOCH``, when set, dates the page.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import sys

from qmpsh import __version__, config
from qmpsh.cli import DESCRIPTION, HELP_SECTIONS, SUMMARY, build_parser
from qmpsh.commands import BUILTINS

SEE_ALSO = [("qemu", 1), ("qemu-img", 1)]

#: What each example shows, and the command lines. SOCK is a QMP socket; the examples run in a test.
EXAMPLES: list[tuple[str, list[str]]] = [
    ("Open a shell on a QEMU started with -qmp unix:/tmp/qmp.sock,server=on,wait=off:",
     ["qmpsh /tmp/qmp.sock"]),
    ("Start QEMU as the live block operations document does (a fresh a.qcow2 as node-A, paused), and "
     "open a shell on it; leaving stops that QEMU:",
     ["qmpsh --launch"]),
    ("Start a QEMU of your own for the session, with no display:",
     ["qmpsh --launch -- -M q35 -m 1G -nodefaults -display none"]),
    ("A script: one JSON document per line on stdout, for jq; the exit status says how it went:",
     ["printf 'query-status\\n' | qmpsh SOCK | jq -r .return.status"]),
    ("Build an overlay and stream into it, waiting for the job to end; stop at the first failure (-e):",
     ["qmpsh -e SOCK <<'EOF'",
      "blockdev-snapshot-sync node-name=node-A snapshot-file=b.qcow2 snapshot-node-name=node-B format=qcow2",
      "block-stream device=node-B job-id=job0",
      "/job job0",
      "EOF"]),
    ("Paste the document's JSON as it is: the (QEMU) prompt is stripped and each command runs once:",
     ["qmpsh SOCK <<'EOF'",
      '(QEMU) query-block',
      '{ "execute": "query-block" }',
      "EOF"]),
    ("Human monitor commands, and a log of every message sent and received:",
     ["echo 'info block' | qmpsh -H -l qmp.log SOCK"]),
]


def escape(text: str) -> str:
    """Text for roff: backslashes and minus signs escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    return action.dest.upper()


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:
        params = {**vars(action), "prog": parser.prog}
        if action.choices is not None:
            params["choices"] = ", ".join(str(choice) for choice in action.choices)
        text = text % params
    return text


def _option_term(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ", ".join(bold(option) for option in action.option_strings)
    value = italic(_metavar(action))
    return ", ".join(f"{bold(option)} {value}" for option in action.option_strings)


def _synopsis(parser: argparse.ArgumentParser) -> list[str]:
    words = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        option = min(action.option_strings, key=len)
        words.append(f"[{bold(option)}]" if action.nargs == 0 else f"[{bold(option)} {italic(_metavar(action))}]")
    positional = [f"[{italic(_metavar(action))}]" for action in parser._actions if not action.option_strings]
    return [
        ".SY " + parser.prog, *words, *positional, ".YS",
        ".SY " + parser.prog, f"[{italic('options')}]", bold("--launch"),
        f"[{bold('--')} {italic('QEMU-ARGUMENT')}...]", ".YS",
    ]


def _items(items: list[tuple[str, str]]) -> list[str]:
    lines = []
    for term, text in items:
        lines += [".TP", bold(term), escape(text)]
    return lines


def _config_example(parser: argparse.ArgumentParser) -> list[str]:
    """The config file that changes nothing: every key with its option's default."""
    actions = {option[2:]: action for action in parser._actions for option in action.option_strings}
    lines = []
    for key in config.KEYS:
        default = actions[key].default
        lines.append(f"{key} = {json.dumps(default if isinstance(default, (bool, int)) else str(default))}")
    return [".PP", "A config file that sets every key to its default:", ".PP", ".RS", ".EX",
            *(escape(line) for line in lines), ".EE", ".RE"]


def _builtins() -> list[str]:
    """Each built-in as its docstring says: its usage line, then its description in full."""
    lines = [".PP", "Lines that start with / are qmpsh's own commands; everything else goes to QEMU."]
    for name, handler in BUILTINS.items():
        first, _, rest = inspect.cleandoc(handler.__doc__ or f"/{name}").partition("\n")
        usage, _, summary = first.partition(": ")
        lines += [".TP", bold(usage), escape(summary.rstrip("."))]
        for paragraph in rest.strip().split("\n\n"):
            if paragraph:
                lines += [".IP", escape(" ".join(paragraph.split()))]
    return lines


def _examples() -> list[str]:
    lines = []
    for text, commands in EXAMPLES:
        lines += [".PP", escape(text), ".PP", ".RS", ".EX", *(escape(command) for command in commands), ".EE", ".RE"]
    return lines


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%d")


def render(parser: argparse.ArgumentParser | None = None) -> str:
    parser = parser or build_parser()
    sections = dict(HELP_SECTIONS)
    out = [
        ".\\\" Written by python -m qmpsh.manpage from qmpsh's argument parser: do not edit.",
        ".nr HY 0",
        f'.TH QMPSH 1 "{_date()}" "qmpsh {__version__}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"qmpsh \\- {escape(SUMMARY)}",
        ".SH SYNOPSIS",
        *_synopsis(parser),
        ".SH DESCRIPTION",
        escape(DESCRIPTION),
        ".SH OPTIONS",
    ]
    positionals = [action for action in parser._actions if not action.option_strings]
    for action in positionals + [action for action in parser._actions if action.option_strings]:
        if action.help == argparse.SUPPRESS:
            continue
        term = italic(_metavar(action)) if not action.option_strings else _option_term(action)
        out += [".TP", term, escape(_help(parser, action))]
    out += [".SH INPUT", *_items(sections.pop("input"))]
    out += [".SH BUILT-IN COMMANDS", *_builtins()]
    out += [".SH EXIT STATUS", *_items(sections.pop("exit status"))]
    out += [".SH ENVIRONMENT", *_items(sections.pop("environment"))]
    out += [".SH FILES", *_items(sections.pop("files")), *_config_example(parser)]
    for title, items in sections.items():  # sections added to --help later
        out += [f".SH {escape(title.upper())}", *_items(items)]
    out += [".SH EXAMPLES", *_examples()]
    out += [".SH SEE ALSO", ",\n".join(f".BR {name} ({section})" for name, section in SEE_ALSO)]
    return "\n".join(out) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
