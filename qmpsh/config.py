"""The config file: defaults for qmpsh's options, in TOML.

``$XDG_CONFIG_HOME/qmpsh/config.toml`` (``~/.config/qmpsh/config.toml``), or
the file ``QMPSH_CONFIG`` names (set but empty: no config file). Each key is
the long name of an option and takes the value that option takes::

    pretty = true
    color = "never"
    events = "hide:JOB_STATUS_CHANGE"
    timestamps = "relative"
    history-size = 5000
    editing-mode = "vi"

The values become the argument parser's defaults, so an option given on the
command line wins. The parser also checks them (choices, ranges, the events
syntax), so the file accepts exactly what the options accept. A file that is
not TOML, an unknown key or a value of the wrong type is a ``ConfigError``
whose message is one line naming the file and the line.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

# key -> the TOML type its value must have; the key is also the option's long name
KEYS: dict[str, type] = {
    "pretty": bool,
    "color": str,
    "events": str,
    "timestamps": str,
    "history-size": int,
    "editing-mode": str,
}
_TYPE_NAMES = {bool: "true or false", int: "a whole number", str: "a string"}


class ConfigError(Exception):
    """A config file qmpsh cannot use; the message is one line: ``PATH:LINE: what is wrong``."""


def config_path() -> tuple[str | None, bool]:
    """The config file to read, and whether the user named it (then it must exist)."""
    named = os.environ.get("QMPSH_CONFIG")
    if named is not None:
        return (named or None), True
    return os.path.join(xdg_dir("XDG_CONFIG_HOME", ".config"), "config.toml"), False


def xdg_dir(variable: str, default: str) -> str:
    """qmpsh's directory under an XDG base directory: $VARIABLE/qmpsh, or ~/DEFAULT/qmpsh when the
    variable is unset, empty or relative (the XDG spec says to ignore a relative one)."""
    base = os.environ.get(variable, "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), default)
    return os.path.join(base, "qmpsh")


def open_regular(path: str | os.PathLike[str], flags: int) -> int:
    """A descriptor of the regular file ``path`` (created mode 0600 with O_CREAT).

    Anything else is an OSError, never a hang: opening a FIFO waits for its
    other end, and reading /dev/zero never ends.
    """
    try:
        fd = os.open(path, flags | os.O_NONBLOCK, 0o600)  # O_NONBLOCK: a FIFO opens at once, or fails
    except OSError as err:
        if err.errno == errno.ENXIO:  # a FIFO nobody reads, or a socket
            raise OSError(errno.ENXIO, "not a regular file", str(path)) from None
        raise
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    raise OSError(errno.EINVAL, "not a regular file", str(path))


def exists() -> bool:
    """Whether there is a config file for ``load`` to read, or one named that it will say is missing."""
    path, must_exist = config_path()
    return path is not None and (must_exist or os.path.exists(path))


def load(parser: argparse.ArgumentParser) -> dict[str, object]:
    """The option defaults the config file sets, by argparse ``dest`` (empty without a file).

    Raises ConfigError when the file cannot be read or used.
    """
    path, must_exist = config_path()
    if path is None:
        return {}
    try:
        with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"{path}: no such config file (named by QMPSH_CONFIG)") from None
        return {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    values = parse(text, path)
    return apply_to(parser, values, text, path)


def parse(text: str, where: str) -> dict[str, object]:
    """TOML text -> a table; a syntax error names the line and column."""
    import tomllib

    try:
        return tomllib.loads(text)
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(f"{where}: not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
        if found:
            what, line, column = found.groups()
            position = f"{line}:{column}"
        else:
            what = re.sub(r" \(at end of document\)$", "", message)
            position = str(text.count("\n") + (0 if text.endswith("\n") else 1) or 1)
        raise ConfigError(f"{where}:{position}: not valid TOML: {_lower_first(what)}") from None


def apply_to(parser: argparse.ArgumentParser, values: dict[str, object], text: str, where: str) -> dict[str, object]:
    """Check a config table against the parser's options; return the defaults it sets, by dest."""
    actions = {option[2:]: action for action in parser._actions for option in action.option_strings
               if option.startswith("--")}
    defaults: dict[str, object] = {}
    for key, value in values.items():
        try:
            action = actions.get(key)
            if action is None or _key_of(action) not in KEYS:
                import difflib  # only for this error: not on every start

                close = difflib.get_close_matches(key, list(KEYS), n=1)
                hint = f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(KEYS)})"
                raise ValueError(f"unknown key {key!r}{hint}")
            if action.dest in defaults:  # color and colour, say: one option given twice
                raise ValueError(f"{key} sets {_key_of(action)} again")
            defaults[action.dest] = _option_value(key, value, action)
        except ValueError as problem:  # located only now: finding the line costs a scan of the file
            raise ConfigError(f"{_located(where, text, key)}: {problem}") from None
    return defaults


def _key_of(action: argparse.Action) -> str:
    """An option's key in the file: its first long name (any other long name, such as --colour, is
    accepted for it too, as on the command line)."""
    return next(option[2:] for option in action.option_strings if option.startswith("--"))


def _option_value(key: str, value: object, action: argparse.Action) -> object:
    """``value`` as the option takes it; ValueError saying what is wrong with it."""
    wanted = KEYS[_key_of(action)]
    if type(value) is not wanted:  # bool is an int subclass: compare exactly
        raise ValueError(f"{key} must be {_TYPE_NAMES[wanted]}, not {_show(value)}")
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(str(choice) for choice in action.choices)
        raise ValueError(f"{key} must be one of {choices}, not {_show(value)}")
    if callable(action.type):
        from argparse import ArgumentTypeError

        try:
            return action.type(str(value))
        except (ArgumentTypeError, TypeError, ValueError) as err:
            raise ValueError(f"{key} = {_show(value)}: {err}") from None
    return value


def _located(where: str, text: str, key: str) -> str:
    """``PATH:LINE`` for the line that sets ``key`` (a key, a dotted key or a [table]); else PATH."""
    name = re.escape(key)
    pattern = re.compile(rf"""^\s*(?:\[+\s*)?(?:{name}|"{name}"|'{name}')\s*[=.\]]""")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return f"{where}:{number}"
    return where


def _show(value: object) -> str:
    if isinstance(value, (bool, int, float, str)):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
