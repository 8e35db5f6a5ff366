"""Replies, events and notes -> text.

JSON out is always valid JSON (``jq`` reads scripted output). Colour is a
cheap regex pass over ``json.dumps`` output, so megabyte replies stay fast and
no highlighting library is imported on the scripted path.

Built-ins hand their answer over as a view (``views``) to ``Renderer.show``, which picks its form:
JSON in scripts, drawn by rich at a terminal; built-ins never print for themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

from qmpsh.syntax import ParseError

_RESET = "\x1b[0m"
_KEY = "\x1b[34;1m"
_STRING = "\x1b[32m"
_NUMBER = "\x1b[36m"
_LITERAL = "\x1b[35m"
_ERROR = "\x1b[31;1m"
_NOTE = "\x1b[2m"
_EVENT = "\x1b[33;1m"

# Patterns for colour and for replies that are not JSON, which a plain script never needs: re compiles
# (and caches) them at their first use, not at every start.
_JSON_TOKEN = (
    r'("(?:[^"\\]|\\.)*")(\s*:)?'  # string, maybe a key
    r"|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"  # number
    r"|\b(true|false|null)\b"
)
_NOT_JSON = r'("(?:[^"\\]|\\.)*")|(-?Infinity|NaN)'  # strings, to skip; then NaN and Infinity


def _encoders(indent: int | None) -> tuple[json.JSONEncoder, json.JSONEncoder]:
    """The printer's encoders, strict (no NaN) and lenient: made once, as ``json.dumps`` would make them per call."""
    return (json.JSONEncoder(indent=indent, ensure_ascii=False, allow_nan=False),
            json.JSONEncoder(indent=indent, ensure_ascii=False))


_COMPACT, _PRETTY = _encoders(None), _encoders(4)


def _paint(match: re.Match[str]) -> str:
    string, colon, number, literal = match.groups()
    if string is not None:
        return f"{_KEY if colon else _STRING}{string}{_RESET}{colon or ''}"
    if number is not None:
        return f"{_NUMBER}{number}{_RESET}"
    return f"{_LITERAL}{literal}{_RESET}"


def colour_json(text: str) -> str:
    """ANSI-colour a JSON text (keys, strings, numbers, literals)."""
    return re.sub(_JSON_TOKEN, _paint, text)


def want_colour(choice: str, stream: TextIO) -> bool:
    """Decide colour once: ``always``/``never``, or ``auto`` (a tty and no NO_COLOR)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and not os.environ.get("NO_COLOR")


class View(Protocol):
    """A built-in's answer as data (the views in ``views``): the renderer picks the form that suits."""

    @property
    def empty(self) -> str:
        """The note said at a terminal instead of a view with nothing in it; "" when there is something."""

    def as_json(self) -> object:
        """The form a script reads on stdout; None for text meant for people only (``/help``), put on stderr."""

    def drawn(self, colour: bool) -> str:
        """The form a terminal shows, in colour or not."""


class Renderer:
    """Writes JSON documents to stdout and notes and errors to stderr.

    Streams are looked up at write time, so prompt_toolkit's patch_stdout
    (which swaps sys.stdout) routes interactive output above the prompt.
    In scripted mode writes are flushed once per event-loop turn.

    stdout that cannot be written (its reader went away, a full disk) is not
    QEMU's fault: the first failure is kept in ``stdout_error`` (and said,
    unless it is a broken pipe), and what follows goes to /dev/null.
    """

    def __init__(self, *, pretty: bool = False, colour: bool = False, interactive: bool = False,
                 timestamps: str = "absolute") -> None:
        self.pretty = pretty
        self.colour = colour
        self.interactive = interactive
        self.timestamps = timestamps  # how events show their time at a terminal: absolute, relative, off
        self.since = time.time()  # what relative timestamps count from: the last command sent
        self.sink: Callable[[str], None] | None = None  # replaces stdout while a progress bar is live
        self.stdout_error: OSError | None = None
        self.input_name: str | None = None  # the script file lines come from now: named with their number
        self._flush_pending = False

    # -- low level ---------------------------------------------------------

    def dumps(self, obj: object) -> str:
        return self._json(obj)[0]

    def _json(self, obj: object) -> tuple[str, bool]:
        """``obj`` as JSON text, and whether it was JSON as it is.

        A server can send NaN and Infinity (Python's json reads them); JSON has neither, so they
        print as the strings "NaN", "Infinity" and "-Infinity".
        """
        strict_encoder, lenient_encoder = _PRETTY if self.pretty else _COMPACT
        try:
            text, strict = strict_encoder.encode(obj), True
        except ValueError:
            text = lenient_encoder.encode(obj)
            text, strict = re.sub(_NOT_JSON, lambda m: m.group(1) or f'"{m.group(2)}"', text), False
        return (colour_json(text) if self.colour else text), strict

    def out(self, text: str) -> None:
        if self.sink is not None:
            self.sink(text)
            return
        self._write(text + "\n")

    def err(self, text: str) -> None:
        self._flush()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def _write(self, text: str) -> None:
        try:
            sys.stdout.write(text)  # flushes by itself when its buffer is full
        except OSError as err:
            self._stdout_failed(err)
            return
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        try:
            sys.stdout.flush()
        except OSError as err:
            self._stdout_failed(err)
        except ValueError:  # closed
            pass

    def _stdout_failed(self, err: OSError) -> None:
        """Keep the first error; send stdout to /dev/null, so that what is still buffered cannot fail again
        (nor at exit, where Python would complain with a traceback and exit 120)."""
        if self.stdout_error is not None:
            return
        self.stdout_error = err
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        if not isinstance(err, BrokenPipeError):  # a reader that went away is no news, as for cat or jq
            self.error(f"stdout: {err.strerror}")

    def flush(self) -> None:
        self._flush()

    # -- documents -----------------------------------------------------------

    def document(self, obj: object) -> bool:
        """Print ``obj``; False if it held NaN or Infinity (printed as strings)."""
        text, strict = self._json(obj)
        self.out(text)
        return strict

    def event(self, msg: Mapping[str, object]) -> bool:
        """An event as JSON; at a terminal its time leads the line instead of a timestamp object.

        False if it held NaN or Infinity (printed as strings).
        """
        stamp = self.event_time(msg) if self.interactive else ""
        if not stamp:
            return self.document(msg)
        text, strict = self._json({k: v for k, v in msg.items() if k != "timestamp"})
        self.out(f"{_EVENT}{stamp}{_RESET} {text}" if self.colour else f"{stamp} {text}")
        return strict

    def event_time(self, msg: Mapping[str, object]) -> str:
        """The event's own timestamp, as --timestamps asks (terminal only: scripts keep pure JSON).

        "" when there is none, or it is no time (a server can send anything): the event then shows it as given.
        """
        stamp = msg.get("timestamp")
        if self.timestamps == "off" or not isinstance(stamp, Mapping):
            return ""
        parts = stamp.get("seconds", 0), stamp.get("microseconds", 0)
        if not all(type(part) in (int, float) for part in parts):  # not bool, not a string
            return ""
        try:
            seconds = parts[0] + parts[1] / 1e6
            local = time.localtime(seconds)
        except (OverflowError, OSError, ValueError):  # NaN, or beyond what a float or the C library's time holds
            return ""
        if self.timestamps == "relative":
            return f"[+{seconds - self.since:.3f}s]"
        return "[" + time.strftime("%H:%M:%S", local) + f".{int(seconds % 1 * 1e3):03d}]"

    def hmp_text(self, text: str) -> None:
        text = text.replace("\r\n", "\n")
        self._write(text if text.endswith("\n") or not text else text + "\n")

    def show(self, view: View) -> None:
        """A built-in's answer: its JSON on stdout in scripts, drawn at a terminal (or a note that it is empty).

        A view with no JSON form is text for people, on stderr: drawn in colour only at a terminal.
        """
        data = view.as_json()
        if data is None:
            self.err(view.drawn(self.colour and self.interactive))
        elif not self.interactive:
            self.document(data)
        elif view.empty:
            self.note(view.empty)
        else:
            self.out(view.drawn(self.colour))

    # -- notes and errors ----------------------------------------------------

    def echo(self, line: str) -> None:
        """An input line, before what it prints (-x, as ``sh -x`` does)."""
        self.err(f"{_NOTE}+ {line}{_RESET}" if self.colour else f"+ {line}")

    def note(self, text: str) -> None:
        self.err(f"{_NOTE}{text}{_RESET}" if self.colour else text)

    def error(self, text: str) -> None:
        prefix = f"{_ERROR}error:{_RESET}" if self.colour else "error:"
        self.err(f"{prefix} {text}")

    def where(self, lineno: int) -> str:
        """Line ``lineno`` of the input: ``FILE:N`` in a script file, else ``line N``."""
        return f"{self.input_name}:{lineno}" if self.input_name is not None else f"line {lineno}"

    def parse_error(self, error: ParseError, with_line: bool) -> None:
        """One line saying what and where, then the source line with a caret."""
        line = self.where(error.lineno) if with_line else ""
        if not error.source:
            self.error(f"{line}: {error.message}" if line else error.message)
            return
        self.error(f"{line}{', ' if line else ''}column {error.column + 1}: {error.message}")
        self.err("  " + error.caret().replace("\n", "\n  "))

    # -- replies and errors about lines (what the session and its requests say) --

    def reply(self, reply: Mapping[str, object], hmp: bool = False) -> bool:
        """A reply to a line: HMP's text as text (-H), anything else as JSON.

        False if it held NaN or Infinity (printed as strings).
        """
        value = reply.get("return")
        if hmp and isinstance(value, str):
            self.hmp_text(value)
            return True
        return self.document(reply)

    def late_reply(self, command: str, lineno: int) -> None:
        """Said right before a reply that comes after its line stopped waiting."""
        self.note(f"late reply to {command} ({self.where(lineno)}):")

    def ignored_reply(self, msg: Mapping[str, object]) -> None:
        """A reply to no request qmpsh sent: shown, and not taken for any line's."""
        what = "an error without an id" if "error" in msg and "id" not in msg else "a reply with an unknown id"
        self.note(f"the server sent {what}, ignored: {self.dumps(msg)}")

    def line_error(self, command: str, what: str, lineno: int | None) -> None:
        """An error about a line's request, with the line's number when there is one (scripts)."""
        where = "" if lineno is None else f"{self.where(lineno)}: "
        self.error(f"{where}{command}: {what}")

    def command_error(self, command: str, reply: Mapping[str, object], lineno: int) -> None:
        """A script's line that QEMU answered with an error: ``line N: cmd: Class: desc`` on stderr."""
        self.line_error(command, describe_error(reply), lineno)

    def input_error(self, error: ParseError, script: bool) -> None:
        """Input that cannot run: the line is named in scripts, and at a terminal past a paste's first line."""
        self.parse_error(error, with_line=script or error.lineno > 1)

    def skipped(self, reason: str, lineno: int | None) -> None:
        """An item not run, and why (the line is named in scripts)."""
        self.note(f"skipped {reason}" + ("" if lineno is None else f" ({self.where(lineno)})"))


#: Said of a reply or an event that held NaN or Infinity.
NOT_JSON_NOTE = "NaN or Infinity (not JSON) printed as strings"


def describe_error(reply: Mapping[str, object]) -> str:
    """A QMP error reply as ``Class: desc``."""
    error = reply.get("error")
    if isinstance(error, dict):
        return f"{error.get('class', 'Error')}: {error.get('desc', '')}"
    return f"malformed reply {reply!r}"
