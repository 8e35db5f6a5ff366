"""Text -> QMP requests.

One pure parser for every input form: qmp-shell's ``command key=value ...``
(dotted keys nest, JSON and Python literal values), ``transaction( ... )``,
raw QMP JSON over one or several lines, and text pasted from documentation
(``(QEMU) `` and ``TRANS> `` prompts, ``-> `` requests, ``<- `` server lines).

No I/O here and no prompt_toolkit: the interactive and the scripted loop both
feed text in and get ``Request``/``Builtin``/``Skipped``/``ParseError`` items
out, in input order. ``cursor_context`` reads the input before the cursor with the
same grammar, for completion and the prompt; the highlighter is built from the
token patterns here.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
import sys
import warnings
from collections.abc import Collection, Iterable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

#: Prompts and markers that documentation puts in front of a line, and what
#: each says about that line.
MARKERS = {"(QEMU)": "prompt", "(qemu)": "prompt", "TRANS>": "prompt", "->": "request", "<-": "server",
           "$": "shell"}
#: The tokens of the input language, as patterns: the parser below and the highlighter (lexer) both use them.
MARKER = "|".join(re.escape(marker) for marker in MARKERS)  # followed by a space or the line's end
COMMAND_NAME = r"[A-Za-z_][A-Za-z0-9_.+-]*"
INTEGER = r"[-+]?[0-9]+"
FLOAT = r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?"
TRANSACTION_OPEN = "transaction("
TRANSACTION_CLOSE = ")"
BOOLEANS = ("true", "false")  # in any case: True, FALSE
NULL = "null"
COMMENT = "#"
FORCE = "!"  # in front of a command: send it unchecked
MARKER_RE = re.compile(rf"^\s*({MARKER})(?=\s|$)\s?")
_COMMAND_NAME_RE = re.compile(COMMAND_NAME)
_INT_RE = re.compile(INTEGER)
_FLOAT_RE = re.compile(FLOAT)
_BARE = r"[^\s\"'{}\[\]\\]+"  # a string that needs no quotes (compiled at first use: /save, --export)
#: Text with no bracket, no quote and nothing but ASCII: nothing opens in it, and no character needs a check.
#: The class is ASCII but " ' [ ] { }, in ranges: as [^{}\[\]"'\x80-\U0010FFFF] it took 2 ms to compile.
_PLAIN_RE = re.compile(r"""[\x00-!#-&(-Z\\^-z|~\x7f]*""")
_WORD_RE = re.compile(r"\S+")
_OPENERS = {"{": "}", "[": "]"}
_CLOSERS = {"}": "{", "]": "["}
#: How deep brackets may nest in a line, and how many levels a dotted key may have. QMP arguments
#: need a handful; QEMU refuses a message nested 1024 deep, and Python's recursion stops before that.
MAX_DEPTH = 64
#: Code points QEMU's JSON parser refuses in a string: surrogates, and the noncharacters (U+FDD0-FDEF,
#: and the last two of every plane).
#: A pattern, compiled (by re's cache) when the first text that is not ASCII is checked: compiling takes 0.5 ms.
_NOT_SENDABLE = ("[\ud800-\udfff\ufdd0-\ufdef"
                 + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
                 + "]")
#: JSON's tokens, for the walk that runs only once raw JSON is known to be wrong (compiled at first use).
_JSON_TOKEN = r'("(?:[^"\\]|\\.)*")([ \t\n\r]*:)?|-?(?:Infinity|[0-9][0-9.eE+-]*)|NaN|[{}\[\]]'
_INFINITE = "number too large: JSON has no Infinity"
#: The empty default of the items' mappings, which nobody changes: one, read-only.
_NOTHING: Mapping[str, Any] = MappingProxyType({})


class ParseError(Exception):
    """Bad input: a message, the offending source line and the 0-based column."""

    def __init__(self, message: str, source: str = "", column: int = 0, lineno: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.column = column
        self.lineno = lineno

    def __str__(self) -> str:
        return self.message

    def caret(self) -> str:
        """The source line with a caret under the offending column."""
        return f"{self.source}\n{' ' * self.column}^"


class Request(NamedTuple):
    """A QMP message to send. ``form`` is how it was written: kv, json, transaction or hmp."""

    message: dict[str, object]
    form: str
    lineno: int = 1
    from_prompt: bool = False  # the line carried a pasted "(QEMU) " prompt
    force: bool = False  # a leading "!": send without checking against the schema
    source: str = ""  # the line as typed, for carets under schema errors
    columns: Mapping[str, int] = _NOTHING  # dotted key ("" = command) -> column

    @property
    def command(self) -> str:
        return str(self.message.get("execute", self.message.get("exec-oob", "")))


class Builtin(NamedTuple):
    """A ``/name`` shell command: its bare words and its key=value arguments (or, for the
    built-ins in ``RAW_BUILTINS``, the rest of the line as it is, in ``text``)."""

    name: str
    words: tuple[str, ...] = ()
    args: Mapping[str, object] = _NOTHING
    lineno: int = 1
    text: str = ""


#: Built-ins that take the rest of their line as it is: /shell's command line is for sh, not for us.
RAW_BUILTINS = frozenset({"shell"})


class Skipped(NamedTuple):
    """Pasted text that is deliberately not sent (a reply, an event, a doc echo)."""

    reason: str
    lineno: int = 1


Item = Request | Builtin | Skipped | ParseError


class Parsed(NamedTuple):
    items: list[Item]
    incomplete: bool = False  # brackets or a transaction are still open: more lines needed


class _Line:
    """One logical line: physical lines joined while brackets are open."""

    def __init__(self, text: str, marker: str, sources: list[str], lineno: int, indent: int) -> None:
        self.text = text  # with any marker removed
        self.marker = marker  # "", "prompt", "request" or "server"
        self.sources = sources  # the physical lines as typed
        self.lineno = lineno  # 1-based number of the first physical line
        self.indent = indent  # columns removed from the first physical line
        self.scan_error: tuple[str, int] | None = None  # (message, offset) of a bracket or quote fault

    def column(self, offset: int) -> int:
        """The column of ``offset`` in the first physical line (its last column if beyond)."""
        end = self.text.find("\n")
        if 0 <= end < offset:
            return len(self.sources[0])
        return offset + self.indent

    def error(self, message: str, offset: int) -> ParseError:
        """A ParseError pointing at ``offset`` in ``text``."""
        row = self.text.count("\n", 0, offset)
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        if row == 0:
            column += self.indent
        return ParseError(message, self.sources[row], column, self.lineno + row)


class _Unbalanced(Exception):
    """A fault at ``offset`` in the text scanned or parsed: a bracket, a quote, a value that cannot be sent."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _scan(text: str, stack: list[tuple[str, int]], base: int = 0) -> None:
    """Track ``{``/``[`` nesting through ``text``, skipping quoted strings.

    ``stack`` holds (opener, offset) of the brackets still open and is updated
    in place. Quotes never span lines. Raises _Unbalanced on a mismatched
    closer or an unterminated string.
    """
    quote = ""
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
            elif ch == "\n":
                raise _Unbalanced("unterminated string", base + start)
        elif ch in "\"'":
            # An apostrophe inside a bare word (it's) is not a quote.
            if ch == '"' or i == 0 or not (text[i - 1].isalnum()):
                quote, start = ch, i
        elif ch in _OPENERS:
            if len(stack) >= MAX_DEPTH:
                raise _Unbalanced(f"nested too deeply: more than {MAX_DEPTH} levels", base + i)
            stack.append((ch, base + i))
        elif ch in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[ch]:
                raise _Unbalanced(f"unexpected '{ch}'", base + i)
            stack.pop()
        i += 1
    if quote:
        raise _Unbalanced("unterminated string", base + start)


def tokens(text: str) -> list[tuple[str, int]]:
    """Split at whitespace outside quotes and brackets: (token, offset) pairs."""
    if _PLAIN_RE.fullmatch(text):  # no quotes, no brackets: the words between whitespace
        return [(word.group(), word.start()) for word in _WORD_RE.finditer(text)]
    out: list[tuple[str, int]] = []
    depth = 0
    quote = ""
    start = -1
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch.isspace() and depth == 0:
            if start >= 0:
                out.append((text[start:i], start))
                start = -1
        else:
            if start < 0:
                start = i
            if ch == '"' or (ch == "'" and (i == start or not text[i - 1].isalnum())):
                quote = ch
            elif ch in _OPENERS:
                depth += 1
            elif ch in _CLOSERS:
                depth -= 1
        i += 1
    if start >= 0:
        out.append((text[start:], start))
    return out


# --------------------------------------------------------------------------
# Values


def _too_long() -> str:
    return f"integer too long: more than {sys.get_int_max_str_digits()} digits"


def _not_unicode(char: str, typed: bool) -> str:
    """Why a code point cannot be sent: a ``typed`` surrogate stands for a byte that is not UTF-8."""
    code = ord(char)
    if typed and 0xDC80 <= code <= 0xDCFF:  # how Python decodes such a byte (errors="surrogateescape")
        return f"byte \\x{code - 0xDC00:02x} is not UTF-8"
    if 0xD800 <= code <= 0xDFFF:
        return f"lone surrogate \\u{code:04x}: not valid Unicode"
    return f"noncharacter U+{code:04X}: QEMU refuses it"


def _surrogate(text: str) -> re.Match[str] | None:
    """The first code point in ``text`` that QEMU refuses (a surrogate, a noncharacter), so never sent."""
    return None if text.isascii() else re.search(_NOT_SENDABLE, text)


def _value_fault(value: object) -> str | None:
    """Why a decoded value cannot go out as strict JSON: Infinity, a lone surrogate, an integer too long to write."""
    if isinstance(value, str):
        bad = _surrogate(value)
        return _not_unicode(bad.group(), typed=False) if bad else None
    if isinstance(value, float):
        return _INFINITE if math.isinf(value) else None
    if isinstance(value, int):
        try:
            str(value)  # a hex literal can be longer than Python writes in decimal
        except ValueError:
            return _too_long()
    return None


def _finite(text: str) -> float:
    """A number's float: one beyond a double's range would go out as Infinity, which JSON has not."""
    value = float(text)
    if math.isinf(value):
        raise _Unbalanced(_INFINITE, 0)
    return value


def _not_json(name: str) -> object:
    raise _Unbalanced(f"{name} is not JSON", 0)


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Unbalanced("duplicate key", 0)  # _strict_fault finds which, and where
    return obj


#: JSON as QEMU's parser reads it (made once: json.loads with hooks would make one per call).
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite, object_pairs_hook=_unique)


def _strict_fault(text: str) -> _Unbalanced | None:
    """The first thing in JSON ``text`` that Python's json reads and QEMU's parser refuses, at its offset.

    Walks the tokens, so it runs only once something is known to be wrong (or a \\u escape may be).
    """
    keys: list[set[str] | None] = []  # for each open bracket, the keys seen in it ({) or None ([)
    for match in re.finditer(_JSON_TOKEN, text):
        string, colon = match.groups()
        token, at = string or match.group(), match.start()
        if token in ("{", "["):
            keys.append(set() if token == "{" else None)
        elif token in ("}", "]"):
            if keys:
                keys.pop()
        elif token in ("NaN", "Infinity", "-Infinity"):
            return _Unbalanced(f"{token} is not JSON", at)
        else:
            try:
                value = json.loads(token)
            except json.JSONDecodeError:
                continue
            except ValueError:  # an integer of more digits than Python converts
                return _Unbalanced(_too_long(), at)
            fault = _value_fault(value)
            if fault:
                return _Unbalanced(fault, at)
            seen = keys[-1] if colon and keys else None
            if seen is not None and isinstance(value, str):
                if value in seen:
                    return _Unbalanced(f"duplicate key '{value}'", at)
                seen.add(value)
    return None


def _loads(text: str) -> object:
    """JSON as QEMU's parser reads it: no NaN or Infinity, no duplicate keys, no lone surrogates,
    no integer too long for Python to write back.

    Raises json.JSONDecodeError for bad syntax, and _Unbalanced at its place for the rest.
    """
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _Unbalanced(f"nested too deeply: more than {MAX_DEPTH} levels", 0) from None
    except (_Unbalanced, ValueError) as err:  # a hook refused; an integer too long
        raise (_strict_fault(text) or _Unbalanced(str(err), 0)) from None
    fault = _strict_fault(text) if "\\u" in text else None  # an escape may be half a surrogate pair
    if fault:
        raise fault
    return value


def _node_offset(source: str, node: ast.AST) -> int:
    """Where ``node`` starts in ``source``: ast counts lines from 1, and columns in UTF-8 bytes."""
    lines = source.split("\n")
    row = getattr(node, "lineno", 1) - 1
    head = lines[row].encode("utf-8", "surrogatepass")[:getattr(node, "col_offset", 0)]
    return sum(len(line) + 1 for line in lines[:row]) + len(head.decode("utf-8", "replace"))


def _literal(node: ast.AST, source: str) -> object:
    """A JSON value from a Python literal AST (True/False/None, 'quotes'); ``source`` places faults."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        fault = _value_fault(node.value)
        if fault:
            raise _Unbalanced(fault, _node_offset(source, node))
        return node.value
    if isinstance(node, ast.Name) and node.id in ("true", "false", "null", "True", "False", "None"):
        return {"true": True, "True": True, "false": False, "False": False}.get(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, source)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, source) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=True):
            key = _literal(k, source) if k is not None else None
            if k is None or not isinstance(key, str):
                raise ValueError("object keys must be strings")
            if key in out:
                raise _Unbalanced(f"duplicate key '{key}'", _node_offset(source, k))
            out[key] = _literal(v, source)
        return out
    raise ValueError(f"not a JSON value: {ast.dump(node)[:40]}")


def _compound(text: str) -> object:
    """Parse a ``{...}``/``[...]`` value as JSON, else as a Python literal."""
    try:
        return _loads(text)
    except json.JSONDecodeError as json_error:
        try:
            with warnings.catch_warnings():  # "invalid escape sequence" is the user's text, not our bug
                warnings.simplefilter("ignore")
                return _literal(ast.parse(text.strip(), mode="eval").body, text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise _Unbalanced(f"invalid JSON value: {json_error.msg}", json_error.pos) from None


def _quoted(text: str) -> str:
    """The string inside ``"..."`` or ``'...'`` (escapes honoured)."""
    try:
        value = json.loads(text) if text[0] == '"' else ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, str):
        # The closing quote is not the last character, or a bad escape.
        raise _Unbalanced("a quoted value must end at its closing quote", 0)
    bad = _surrogate(value)
    if bad:
        raise _Unbalanced(_not_unicode(bad.group(), typed=False), 0)
    return value


def parse_value(text: str) -> object:
    """One key=value value: number, bool, null, JSON/Python literal, quoted or bare string."""
    if not text:
        return ""
    first = text[0]
    if first in "\"'":
        return _quoted(text)
    if first in "{[":
        return _compound(text)
    if _INT_RE.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than Python converts
            raise _Unbalanced(_too_long(), 0) from None
    if _FLOAT_RE.fullmatch(text):
        return _finite(text)
    lowered = text.lower()
    if lowered in BOOLEANS:
        return lowered == "true"
    if text == NULL:
        return None
    return text


def _merge(dst: dict[str, object], src: dict[str, object], path: str) -> None:
    """Merge ``src`` into ``dst``; the same leaf given twice is an error (ValueError)."""
    for key, value in src.items():
        here = f"{path}.{key}" if path else key
        if key not in dst:
            dst[key] = value
        elif isinstance(old := dst[key], dict) and isinstance(value, dict):
            _merge(old, value, here)
        elif isinstance(old, dict) or isinstance(value, dict):
            raise ValueError(f"'{here}' is used both as an object and as a value")
        else:
            raise ValueError(f"duplicate key '{here}'")


def _argument(token: str) -> tuple[str, dict[str, object]]:
    """One ``key=value`` token: its key, and its value nested under the key's parts (``a.b=1``:
    ``{"a": {"b": 1}}``). Raises _Unbalanced at the fault's offset in the token."""
    key, sep, raw = token.partition("=")
    if not sep:
        raise _Unbalanced(f"expected key=value, got '{token}'", 0)
    path = key.split(".")
    if not all(path) or any(c in key for c in "\"'{}[]"):
        raise _Unbalanced(f"bad key '{key}'", 0)
    if len(path) > MAX_DEPTH:
        raise _Unbalanced(f"key nested too deeply: more than {MAX_DEPTH} levels", 0)
    try:
        value = parse_value(raw)
    except _Unbalanced as err:
        raise _Unbalanced(err.args[0], len(key) + 1 + err.offset) from None
    nested: dict[str, object] = {path[-1]: value}
    for part in reversed(path[:-1]):
        nested = {part: nested}
    return key, nested


def parse_arguments(line: _Line, words: list[tuple[str, int]],
                    columns: dict[str, int] | None = None) -> dict[str, object]:
    """key=value tokens -> a nested arguments object; ``columns`` gets each key's column."""
    args: dict[str, object] = {}
    for token, offset in words:
        try:
            key, nested = _argument(token)
        except _Unbalanced as err:
            raise line.error(err.args[0], offset + err.offset) from None
        try:
            _merge(args, nested, "")
        except ValueError as err:
            raise line.error(str(err), offset) from None
        if columns is not None:
            columns[key] = line.column(offset)
    return args


def parse_line_arguments(text: str) -> dict[str, object]:
    """``key=value ...`` (no command) -> arguments; raises ParseError."""
    return parse_arguments(_Line(text, "", [text], 1, 0), tokens(text))


# --------------------------------------------------------------------------
# Lines


def _parse_json(line: _Line) -> Item:
    if line.marker == "server":
        return Skipped("server line", line.lineno)
    try:
        obj = _loads(line.text)
    except json.JSONDecodeError as err:
        return line.error(f"invalid JSON: {err.msg}", err.pos)
    except _Unbalanced as err:
        return line.error(err.args[0], err.offset)
    if not isinstance(obj, dict):
        return line.error("a QMP message must be a JSON object", 0)
    for key, what in (("return", "reply"), ("error", "error reply"), ("event", "event"), ("QMP", "greeting")):
        if key in obj and "execute" not in obj and "exec-oob" not in obj:
            return Skipped(f"pasted {what}", line.lineno)
    name = obj.get("execute", obj.get("exec-oob"))
    if not isinstance(name, str):
        return line.error("a QMP command object needs \"execute\" (or \"exec-oob\") naming the command", 0)
    return Request(obj, "json", line.lineno)


def _command(line: _Line, words: list[tuple[str, int]],
             columns: dict[str, int] | None = None) -> tuple[str, dict[str, object]]:
    """A ``name key=value ...`` command from tokens."""
    name, offset = words[0]
    if not _COMMAND_NAME_RE.fullmatch(name):
        if "=" in name:
            raise line.error(f"expected a command name before '{name}'", offset)
        raise line.error(f"'{name}' is not a command name", offset)
    if columns is not None:
        columns[""] = line.column(offset)
    return name, parse_arguments(line, words[1:], columns)


def _parse_builtin(line: _Line, words: list[tuple[str, int]], builtins: Collection[str]) -> Item:
    name, offset = words[0]
    name = name[1:]
    if name not in builtins:
        known = ", ".join("/" + b for b in sorted(builtins))
        return line.error(f"unknown built-in '/{name}' (built-ins: {known})", offset)
    if name in RAW_BUILTINS:
        return Builtin(name, lineno=line.lineno, text=line.text[offset + len(name) + 1:].strip())
    bare = tuple(t for t, _ in words[1:] if "=" not in t)
    try:
        args = parse_arguments(line, [t for t in words[1:] if "=" in t[0]])
    except ParseError as err:
        return err
    return Builtin(name, bare, args, line.lineno)


class _Transaction:
    """Actions gathered between ``transaction(`` and ``)``."""

    def __init__(self, lineno: int) -> None:
        self.lineno = lineno
        self.actions: list[dict[str, object]] = []
        self.error: ParseError | None = None

    def add(self, line: _Line, words: list[tuple[str, int]]) -> bool:
        """Add the actions on one line; True when the line closes the transaction."""
        closes = bool(words) and words[-1][0] == TRANSACTION_CLOSE
        if closes:
            words = words[:-1]
        if words and self.error is None:
            try:
                kind, data = _command(line, words)
                self.actions.append({"type": kind, "data": data})
            except ParseError as err:
                self.error = err
        return closes

    def result(self) -> Item:
        if self.error is not None:
            return self.error
        message: dict[str, object] = {"execute": "transaction", "arguments": {"actions": self.actions}}
        return Request(message, "transaction", self.lineno)


class _Gatherer:
    """Physical lines in, items out, as they come: each line is scanned once, so input of any
    length is parsed in linear time (a script's 4,000-line transaction as well as a paste)."""

    def __init__(self, builtins: Collection[str], hmp: bool) -> None:
        self.builtins = builtins
        self.hmp = hmp
        self.items: list[Item] = []  # complete items not yet taken
        self._open: _Line | None = None  # a logical line whose brackets are still open
        self._parts: list[str] = []  # its physical lines, joined when it closes
        self._length = 0  # the length of its text so far
        self._stack: list[tuple[str, int]] = []  # its open brackets
        self._transaction: _Transaction | None = None
        self._shell: list[str] | None = None  # a pasted "$ command \\" whose next line continues it
        self._shell_lineno = 0
        self._continued: list[str] | None = None  # the parts of a line whose ends a backslash continued
        self._continued_lineno = 0
        self.last: tuple[str, int] = ("", 0)  # the last physical line and its number

    def forget(self) -> None:
        """Drop the items and transaction actions gathered so far, for a caller that needs only ``incomplete``."""
        self.items.clear()
        if self._transaction is not None:
            self._transaction.actions.clear()

    def copy(self) -> _Gatherer:
        """A gatherer in the same state, to try a line on without changing this one."""
        other = copy.copy(self)
        other.items, other._parts, other._stack = [], list(self._parts), list(self._stack)
        other._shell = None if self._shell is None else list(self._shell)
        other._continued = None if self._continued is None else list(self._continued)
        if self._open is not None:
            other._open = copy.copy(self._open)
            other._open.sources = list(self._open.sources)
        if self._transaction is not None:
            other._transaction = copy.copy(self._transaction)
            other._transaction.actions = list(self._transaction.actions)
        return other

    @property
    def incomplete(self) -> bool:
        """Brackets or a transaction are open: more lines are needed."""
        return (self._open is not None or self._transaction is not None or self._shell is not None
                or self._continued is not None)

    @property
    def in_brackets(self) -> bool:
        """A line's brackets are open: its next line continues it."""
        return self._open is not None

    @property
    def in_transaction(self) -> bool:
        """A transaction is open: its next line is an action, or its end."""
        return self._transaction is not None

    @property
    def in_shell_line(self) -> bool:
        """A pasted shell command ended with a backslash: its next line continues it."""
        return self._shell is not None

    @property
    def in_continued_line(self) -> bool:
        """A line ended with a backslash: its next line continues it."""
        return self._continued is not None

    def pending_from(self) -> int | None:
        """The line the open input (brackets, a transaction, a continued shell line) began on."""
        if self._transaction is not None:
            return self._transaction.lineno
        if self._open is not None:
            return self._open.lineno
        if self._continued is not None:
            return self._continued_lineno
        return self._shell_lineno if self._shell is not None else None

    def add(self, raw: str, lineno: int) -> None:
        """Take physical line ``lineno`` (without its newline)."""
        raw = raw.rstrip("\r")
        self.last = (raw, lineno)
        if self._shell is not None:
            self._shell_line(raw.strip())
            return
        if self._open is None and (self._continued is not None or raw.endswith("\\")):
            whole = self._continues(raw, lineno)
            if whole is None:
                return
            raw, lineno = whole
        line = self._open
        if line is not None:
            base = self._length + 1
            self._parts.append(raw)
            self._length += 1 + len(raw)
            line.sources.append(raw)
        else:
            match = MARKER_RE.match(raw)
            indent = match.end() if match else len(raw) - len(raw.lstrip())
            body = raw[indent:].rstrip()
            if not body or body.startswith(COMMENT):
                return
            if match and MARKERS[match.group(1)] == "shell":
                self._shell, self._shell_lineno = [], lineno
                self._shell_line(body)
                return
            if body.startswith("/") and (body[1:].split(maxsplit=1) or [""])[0] in RAW_BUILTINS:
                self._take(_Line(body, "", [raw], lineno, indent))  # sh's text: its brackets are not ours
                return
            line = _Line(body, MARKERS[match.group(1)] if match else "", [raw], lineno, indent)
            if _PLAIN_RE.fullmatch(body):  # one whole line, nothing to scan in it
                self._take(line)
                return
            self._open = line
            self._parts, self._length, self._stack, base, raw = [body], len(body), [], 0, body
        try:
            _scan(raw, self._stack, base)
        except _Unbalanced as err:
            line.scan_error = (err.args[0], err.offset)
        if not self._stack or line.scan_error:
            self._open = None
            line.text = "\n".join(self._parts)
            bad = None if line.scan_error else _surrogate(line.text)
            if bad:  # input bytes that are not UTF-8, or a lone surrogate typed as it is
                line.scan_error = (_not_unicode(bad.group(), typed=True), bad.start())
            self._take(line)

    def _continues(self, raw: str, lineno: int) -> tuple[str, int] | None:
        """A line that ends with a backslash goes on on the next one, as in sh: None while it does, then
        the whole line (its parts joined by a space) and the number of its first line. Comments and
        pasted shell lines keep their own rules."""
        if self._continued is None:
            if raw.lstrip().startswith((COMMENT, "$")):
                return raw, lineno
            self._continued, self._continued_lineno = [], lineno
        part = raw if not self._continued else raw.strip()
        if part.endswith("\\"):
            self._continued.append(part[:-1].rstrip())
            return None
        whole = " ".join(piece for piece in [*self._continued, part] if piece)
        self._continued = None
        return whole, self._continued_lineno

    def _shell_line(self, text: str) -> None:
        """A line of a pasted shell command (``$ qemu-img create ...``): not for QEMU, so it is
        skipped, with the /shell line that runs it; a trailing backslash continues it."""
        assert self._shell is not None
        self._shell.append(text.removesuffix("\\").strip())
        if not text.endswith("\\"):
            command = " ".join(part for part in self._shell if part)
            self.items.append(Skipped(f"shell command: '/shell {command}' runs it", self._shell_lineno))
            self._shell = None

    def _take(self, line: _Line) -> None:
        """One complete logical line: an item, or a part of the open transaction."""
        if line.scan_error:
            self.items.append(line.error(*line.scan_error))
        elif self._transaction is not None:
            if self._transaction.add(line, tokens(line.text)):
                self.items.append(self._transaction.result())
                self._transaction = None
        elif line.text.startswith("{") and not self.hmp:
            self.items.append(_parse_json(line))
        elif line.marker == "server":
            self.items.append(Skipped("server line", line.lineno))
        else:
            self._words(line, tokens(line.text))

    def _words(self, line: _Line, words: list[tuple[str, int]]) -> None:
        first = words[0][0]
        if first.startswith("/"):
            self.items.append(_parse_builtin(line, words, self.builtins))
        elif self.hmp:
            arguments = {"command-line": line.text}
            self.items.append(Request({"execute": "human-monitor-command", "arguments": arguments}, "hmp", line.lineno))
        elif first == TRANSACTION_OPEN:
            self._transaction = _Transaction(line.lineno)
            if self._transaction.add(line, words[1:]):
                self.items.append(self._transaction.result())
                self._transaction = None
        elif len(words) == 1 and first.endswith("?") and "help" in self.builtins:
            self.items.append(Builtin("help", (first[:-1],), {}, line.lineno))
        else:
            force = first.startswith(FORCE)
            if force:
                words[0] = (first[1:], words[0][1] + 1)
            columns: dict[str, int] = {}
            try:
                name, args = _command(line, words, columns)
            except ParseError as err:
                self.items.append(err)
                return
            # No "arguments" member when there are none: QEMU reads a QMP message one byte per read,
            # so every byte sent costs it about 2 microseconds (15 of 45 bytes for query-status).
            message: dict[str, object] = {"execute": name, "arguments": args} if args else {"execute": name}
            self.items.append(Request(message, "kv", line.lineno,
                                      from_prompt=line.marker == "prompt", force=force,
                                      source=line.sources[0], columns=columns))


def parse(text: str, *, builtins: Collection[str] = (), hmp: bool = False) -> Parsed:
    """Parse a block of input (one line or a paste) into items, in order.

    ``incomplete`` is set, with no items, when the text ends inside brackets
    or an open transaction: the caller should read more lines first.
    """
    gatherer = _Gatherer(builtins, hmp)
    for lineno, raw in enumerate(text.split("\n"), 1):
        gatherer.add(raw, lineno)
    if gatherer.incomplete:
        return Parsed([], incomplete=True)
    return Parsed(gatherer.items)


def needs_more(text: str, *, hmp: bool = False) -> bool:
    """Whether Enter should continue the input: brackets or a transaction are open."""
    return parse(text, hmp=hmp).incomplete


class At(Enum):
    """What the cursor is on."""

    COMMAND = "command"  # a command's name (a transaction's action inside one)
    BUILTIN = "builtin"  # a built-in's name, after its "/"
    KEY = "key"  # a word without "=": an argument's dotted key (a built-in's bare word too)
    VALUE = "value"  # the value of key=value
    JSON = "json"  # a value the user writes: JSON, a quoted string, brackets open from lines above
    WORD = "word"  # a word of an HMP command line (-H)
    NOTHING = "nothing"  # "transaction(", a comment, a pasted shell or server line, a closed transaction


class Context(NamedTuple):
    """What the text before the cursor is, read by the one grammar: the completer, the prompt's Enter
    and continuation lines all read it (pgcli's suggest_type over one parse)."""

    more: bool  # the input so far needs more lines: brackets, a transaction or a shell line are open
    at: At = At.NOTHING
    marker: str = ""  # the pasted prompt or marker the cursor's line starts with: "(QEMU)", "TRANS>", "->" ...
    transaction: bool = False  # the cursor's line is inside an open transaction
    force: bool = False  # the command carries a leading "!"
    words: tuple[str, ...] = ()  # the line's words before the cursor's, the command's name first
    path: str = ""  # KEY: the dotted key typed so far; VALUE: the key whose value it is
    prefix: str = ""  # what the cursor's word has typed of what completion would write
    given: Mapping[str, object] = _NOTHING  # the arguments before the cursor, leniently

    @property
    def command(self) -> str:
        """The command, transaction action, "/built-in" or HMP command the cursor's words belong to."""
        return self.words[0] if self.words else ""


def _lenient_arguments(words: Iterable[str]) -> dict[str, object]:
    """``key=value`` words as an arguments object, each read once; a word that does not parse or
    clashes with the words before it is left out."""
    args: dict[str, object] = {}
    for word in words:
        try:
            _, nested = _argument(word)
            if _fits(args, nested):
                _merge(args, nested, "")
        except (_Unbalanced, RecursionError):  # RecursionError: a JSON value nested too deeply
            continue
    return args


def _fits(dst: Mapping[str, object], src: Mapping[str, object]) -> bool:
    """Whether ``_merge`` takes ``src`` into ``dst`` without a clash (it raises half way through)."""
    for key, value in src.items():
        if key in dst:
            old = dst[key]
            if not (isinstance(old, dict) and isinstance(value, dict) and _fits(old, value)):
                return False
    return True


def _line_context(line: str, more: bool, transaction: bool, hmp: bool) -> Context:
    """The context at the end of ``line``, the cursor's line, when no brackets from above continue into it."""
    match = MARKER_RE.match(line)
    marker = match.group(1) if match else ""
    body = line[match.end():] if match else line
    if MARKERS.get(marker) in ("shell", "server") or body.lstrip().startswith(COMMENT):
        return Context(more, marker=marker)  # not for QEMU
    force = not hmp and body.startswith(FORCE)
    if force:
        body = body[len(FORCE):]
    spans = tokens(body)
    words = [word for word, _ in spans]
    if not spans or spans[-1][1] + len(spans[-1][0]) < len(body):
        words.append("")  # the cursor starts a new word (a space inside brackets or quotes does not)
    if hmp and not words[0].startswith("/"):
        return Context(more, At.WORD, marker, words=tuple(words[:-1]), prefix=words[-1])
    if words[0] == TRANSACTION_OPEN:
        if len(words) == 1:
            return Context(more, marker=marker)  # on "transaction(" itself
        transaction, words = True, words[1:]
    *done, partial = words
    if transaction and done[-1:] == [TRANSACTION_CLOSE]:
        return Context(more, marker=marker)  # the transaction is closed
    at, path, prefix = _word_context(partial, bool(done), transaction)
    return Context(more, at, marker, transaction, force, tuple(done), path, prefix, _lenient_arguments(done[1:]))


def _word_context(word: str, after_command: bool, transaction: bool) -> tuple[At, str, str]:
    """What the cursor's ``word`` is: (at, path, prefix) of its ``Context``."""
    if not after_command:
        if word.startswith("/") and not transaction:
            return At.BUILTIN, "", word[1:]
        return (At.JSON if word.startswith("{") else At.COMMAND), "", word
    key, sep, value = word.partition("=")
    if not sep:
        return At.KEY, key, key
    return (At.JSON if value.startswith(("{", "[", '"', "'")) else At.VALUE), key, value


class Continuation:
    """The context at the end of the prompt's buffer, which grows at its end one key at a time:
    lines above the last are parsed once, and kept; only the last line is parsed anew."""

    def __init__(self, hmp: bool = False) -> None:
        self.hmp = hmp
        self._start("")

    def _start(self, done: str) -> None:
        self._done = done  # the text whose lines the gatherer has taken (empty, or ending with a newline)
        self._lines = 0
        self._gatherer = _Gatherer((), self.hmp)

    def context(self, text: str) -> Context:
        """What the end of ``text`` is (see ``Context``)."""
        if not text.startswith(self._done):
            self._start("")
        complete = text.rfind("\n") + 1
        if complete > len(self._done):
            for raw in text[len(self._done):complete - 1].split("\n"):
                self._lines += 1
                self._gatherer.add(raw, self._lines)
            self._gatherer.forget()
            self._done = text[:complete]
        last = text[complete:]
        probe = self._gatherer.copy()
        probe.add(last, self._lines + 1)
        if self._gatherer.in_brackets:
            return Context(probe.incomplete, At.JSON)  # a value that spans lines
        if self._gatherer.in_shell_line or self._gatherer.in_continued_line:
            return Context(probe.incomplete)
        return _line_context(last, probe.incomplete, self._gatherer.in_transaction, self.hmp)

    def needs_more(self, text: str) -> bool:
        """Whether Enter should continue the input: brackets, a transaction or a shell line are open."""
        return self.context(text).more


#: One per mode, for ``cursor_context``: while one types, the lines above the cursor's are parsed once.
_CONTINUATIONS = {False: Continuation(), True: Continuation(hmp=True)}


def cursor_context(text: str, *, hmp: bool = False) -> Context:
    """What the end of ``text``, the input before the cursor, is; ``hmp``: lines other than built-ins
    are HMP command lines. Linear in ``text``."""
    return _CONTINUATIONS[hmp].context(text)


class Reader:
    """Stateful front of the parser, shared by the interactive and scripted loops.

    Feed it whole chunks (a line, or a paste) with ``feed``, or a script's lines one at a
    time with ``add_line``. It drops the JSON form that documentation prints right after a
    qmp-shell line (``(QEMU) cmd k=v`` followed by ``{"execute": "cmd", ...}``), so a pasted
    example runs once.
    """

    def __init__(self, builtins: Collection[str] = (), hmp: bool = False) -> None:
        self.builtins = frozenset(builtins)
        self.hmp = hmp
        self._last_kv: Request | None = None
        self._lines = _Gatherer(self.builtins, hmp)

    def feed(self, text: str) -> Parsed:
        parsed = parse(text, builtins=self.builtins, hmp=self.hmp)
        if parsed.incomplete:
            return parsed
        return Parsed(self._without_echoes(parsed.items))

    def add_line(self, line: str, lineno: int) -> Parsed:
        """Line ``lineno`` of a script: the items it completes (incomplete while brackets or a
        transaction stay open). Item line numbers count from the script's first line."""
        self._lines.add(line.rstrip("\n"), lineno)
        if self._lines.incomplete:
            return Parsed([], incomplete=True)
        items, self._lines.items = self._lines.items, []
        return Parsed(self._without_echoes(items))

    def drop_pending(self) -> int | None:
        """Forget the input still open (a line too long to read broke it); the line it began on."""
        first = self._lines.pending_from()
        self._lines = _Gatherer(self.builtins, self.hmp)
        return first

    def end_of_input(self) -> ParseError | None:
        """The error for a script that ends while brackets or a transaction are still open."""
        if not self._lines.incomplete:
            return None
        last, lineno = self._lines.last
        if self._lines.in_shell_line or self._lines.in_continued_line:
            what = "a shell line ends with \\" if self._lines.in_shell_line else "its last line ends with \\"
        else:
            what = "a bracket or transaction is still open"
        return ParseError(f"unexpected end of input: {what}", last, len(last), lineno)

    def _without_echoes(self, parsed: list[Item]) -> list[Item]:
        items: list[Item] = []
        for item in parsed:
            last, self._last_kv = self._last_kv, None
            if isinstance(item, Request) and item.form == "json" and last and item.command == last.command:
                same = item.message.get("arguments", {}) == last.message.get("arguments", {})
                detail = "" if same else "; its arguments differ, the key=value line's were used"
                items.append(Skipped(f"JSON form of the {last.command} line above{detail}", item.lineno))
                continue
            if isinstance(item, Request) and item.form == "kv" and item.from_prompt:
                self._last_kv = item
            items.append(item)
        return items


def format_kv(command: str, arguments: dict[str, object]) -> str:
    """Render a command as a key=value line that parses back to the same object."""
    parts = [command]
    for key, value in arguments.items():
        parts.append(f"{key}={format_value(value)}")
    return " ".join(parts)


def format_value(value: object) -> str:
    """A value in key=value form; strings are quoted only where needed."""
    if isinstance(value, str):
        bare = re.fullmatch(_BARE, value) and not any(c.isspace() for c in value)
        try:
            return value if bare and parse_value(value) == value else json.dumps(value)
        except _Unbalanced:  # reads as a number that cannot be sent ("1e999"): a string only when quoted
            return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))
