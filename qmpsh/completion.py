"""Completion for the input line, from the live schema and the live-value catalog.

``wanted()`` is pure: it maps the cursor's context, which ``syntax`` reads from
the input with the grammar that parses it, to the kind of thing to offer (a command
name, an argument name of a command, a value of an argument, an event ...).
``QmpCompleter`` answers each kind from the schema or the catalog snapshot,
which are both in memory: completion never waits on QEMU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from qmpsh.catalog import HMP_ARGUMENT_SOURCES, Catalog, Likely, Source, source_for
from qmpsh.commands import BUILTINS
from qmpsh.hmp import HmpCommand, HmpHelp, full_names
from qmpsh.schema import Member, Schema
from qmpsh.syntax import At, Context, cursor_context


def rank(prefix: str, names: Iterable[str], likely: Mapping[str, int] | None = None) -> list[str]:
    """Prefix matches first, then subsequence matches, tightest first; among equals the likeliest
    first (``likely``: lower is likelier, 0 if unsaid), then alphabetically."""
    names = list(dict.fromkeys(names))
    odds = likely or {}
    prefix_hits = sorted((n for n in names if n.startswith(prefix)), key=lambda n: (odds.get(n, 0), n))
    if not prefix:
        return prefix_hits
    fuzzy: list[tuple[int, int, str]] = []
    for name in names:
        if name.startswith(prefix):
            continue
        span = _subsequence_span(prefix, name)
        if span is not None:
            fuzzy.append((span, odds.get(name, 0), name))
    return prefix_hits + [name for _, _, name in sorted(fuzzy)]


def _subsequence_span(needle: str, hay: str) -> int | None:
    """How many characters of ``hay`` the letters of ``needle`` spread over, if they occur in order."""
    start = -1
    at = 0
    for ch in needle:
        at = hay.find(ch, at)
        if at < 0:
            return None
        if start < 0:
            start = at
        at += 1
    return at - start


# -- what is wanted --------------------------------------------------------------


@dataclass(frozen=True)
class CommandName:
    prefix: str
    action: bool = False  # a transaction action rather than a command


@dataclass(frozen=True)
class BuiltinName:
    prefix: str


@dataclass(frozen=True)
class ArgName:
    command: str
    prefix: str  # the dotted key typed so far: "file.dri"
    given: Mapping[str, object] = field(default_factory=dict)
    action: bool = False


@dataclass(frozen=True)
class ArgValue:
    command: str
    path: str  # the dotted key: "file.driver"
    prefix: str
    given: Mapping[str, object] = field(default_factory=dict)
    action: bool = False


@dataclass(frozen=True)
class EventName:
    prefix: str


@dataclass(frozen=True)
class EventKey:
    event: str
    prefix: str
    given: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class HelpTopic:
    prefix: str


@dataclass(frozen=True)
class HmpWord:
    """A word of an HMP line (-H); ``before`` holds the words before it (none: the command's name)."""
    before: tuple[str, ...]
    prefix: str


@dataclass(frozen=True)
class DomainName:
    prefix: str


@dataclass(frozen=True)
class FileName:
    prefix: str


@dataclass(frozen=True)
class Nothing:
    pass


Wanted = (CommandName | BuiltinName | ArgName | ArgValue | EventName | EventKey | HelpTopic | HmpWord | DomainName
          | FileName | Nothing)


def wanted(text: str, hmp: bool = False) -> Wanted:
    """What kind of thing the cursor is at the end of ``text`` (the input so far); ``hmp``: lines
    other than built-ins are HMP commands."""
    here = cursor_context(text, hmp=hmp)
    if here.at is At.WORD:
        return HmpWord(here.words, here.prefix)
    if here.at is At.COMMAND:
        return CommandName(here.prefix, action=here.transaction)
    if here.at is At.BUILTIN:
        return BuiltinName(here.prefix)
    if here.command.startswith("/"):
        return _builtin_argument(here) if here.at is At.KEY else Nothing()
    if here.at is At.KEY:
        return ArgName(here.command, here.prefix, here.given, here.transaction)
    if here.at is At.VALUE:
        return ArgValue(here.command, here.path, here.prefix, here.given, here.transaction)
    return Nothing()


def _builtin_argument(here: Context) -> Wanted:
    """What a built-in's word is: /wait's event and its data keys, /help's topic and its arguments,
    /connect's domain, the file of /source and /save."""
    first = len(here.words) == 1  # the word right after the built-in's name
    if here.command == "/wait":
        return EventName(here.prefix) if first else EventKey(here.words[1], here.prefix, here.given)
    if here.command == "/help":
        return HelpTopic(here.prefix) if first else ArgName(here.words[1], here.prefix, here.given)
    if here.command == "/connect" and first:
        return DomainName(here.prefix)
    if here.command in ("/source", "/save") and first:
        return FileName(here.prefix)
    return Nothing()


# -- candidates --------------------------------------------------------------------


def files(prefix: str) -> list[Candidate]:
    """The files and directories (``dir/``) whose path starts with ``prefix``; hidden ones only when
    the name typed so far starts with a dot."""
    folder, slash, start = prefix.rpartition("/")
    where = folder + slash  # "" (here), "/" or "dir/"
    try:
        entries = sorted(os.scandir(os.path.expanduser(where) or "."), key=lambda entry: entry.name)
    except OSError:
        return []
    return [Candidate(where + entry.name + ("/" if entry.is_dir() else ""), "directory" if entry.is_dir() else "file")
            for entry in entries if entry.name.startswith(start) and (start.startswith(".") or entry.name[0] != ".")]


@dataclass(frozen=True)
class Candidate:
    text: str  # what replaces the prefix
    meta: str = ""


def _at(given: Mapping[str, object], path: list[str]) -> Mapping[str, object]:
    for key in path:
        value = given.get(key)
        given = value if isinstance(value, Mapping) else {}
    return given


class Sources:
    """Answers each kind of ``Wanted`` from the schema and the catalog."""

    def __init__(self, schema: Callable[[], Schema | None], catalog: Catalog | None,
                 commands: Callable[[], Iterable[str]], domains: Callable[[], Iterable[str]] = tuple) -> None:
        self._schema = schema
        self._catalog = catalog
        self._commands = commands
        self._domains = domains

    def candidates(self, want: Wanted) -> list[Candidate]:
        schema = self._schema()
        if isinstance(want, BuiltinName):
            return [Candidate("/" + n, "built-in") for n in rank(want.prefix, BUILTINS)]
        if isinstance(want, CommandName):
            names = (schema.action_names() if want.action and schema else
                     schema.commands if schema else self._commands())
            return [Candidate(n) for n in rank(want.prefix, names)]
        if isinstance(want, HelpTopic):
            names = list(schema.commands) + list(schema.events) if schema else list(self._commands())
            return [Candidate(n) for n in rank(want.prefix, names)]
        if isinstance(want, HmpWord):
            return self._hmp_word(want)
        if isinstance(want, DomainName):
            return [Candidate(n, "domain") for n in rank(want.prefix, self._domains())]
        if isinstance(want, FileName):
            return files(want.prefix)
        if schema is None:
            return []
        if isinstance(want, EventName):
            return [Candidate(n, "event") for n in rank(want.prefix, schema.events)]
        if isinstance(want, EventKey):
            type_name = schema.arg_type(want.event)
            members = schema.members(type_name, want.given) if type_name else []
            return self._names(schema, "", want.prefix, members, want.given)
        if isinstance(want, ArgName):
            return self._arg_names(schema, want)
        if isinstance(want, ArgValue):
            return self._arg_values(schema, want)
        return []

    def _object_members(self, schema: Schema, command: str, path: list[str], given: Mapping[str, object],
                        action: bool) -> list[Member]:
        type_name = schema.action_type(command) if action else schema.arg_type(command)
        return schema.members_at(type_name, path, given)

    def _arg_names(self, schema: Schema, want: ArgName) -> list[Candidate]:
        *path, leaf = want.prefix.split(".")
        members = self._object_members(schema, want.command, path, want.given, want.action)
        return self._names(schema, "".join(p + "." for p in path), leaf, members, _at(want.given, path))

    def _names(self, schema: Schema, parent: str, prefix: str, members: list[Member],
               given: Mapping[str, object]) -> list[Candidate]:
        found: dict[str, Candidate] = {}
        for member in members:
            partly = isinstance(given.get(member.name), Mapping)  # some of its members are given
            if member.name in given and not partly:
                continue  # already given
            meta = schema.describe(member.type) + ("" if member.optional else ", required")
            if not partly:  # "name=" again would clash with the "name.x=" already typed
                found[member.name] = Candidate(f"{parent}{member.name}=", meta)
            if schema.object_type(member.type):
                found[member.name + "."] = Candidate(f"{parent}{member.name}.", "object")
        return [found[n] for n in rank(prefix, found)]

    def _arg_values(self, schema: Schema, want: ArgValue) -> list[Candidate]:
        *path, leaf = want.path.split(".")
        members = self._object_members(schema, want.command, path, want.given, want.action)
        member = next((m for m in members if m.name == leaf), None)
        values: dict[str, str] = {}
        if member is not None:
            alternatives = schema.alternatives(member.type) if schema.meta(member.type) == "alternate" else []
            for type_name in [member.type, *alternatives]:
                if schema.meta(type_name) == "enum":
                    values.update((v, "enum") for v in schema.enum_values(type_name))
                elif schema.json_type(type_name) == "boolean":
                    values.update({"true": "boolean", "false": "boolean"})
            if leaf == "format" and schema.describe(member.type) == "string":
                values.update((d, "block driver") for d in schema.block_drivers())
            obj_type = (schema.action_type(want.command) if want.action else schema.arg_type(want.command))
            if not path and obj_type and schema.tag(obj_type) == leaf:
                values.update((c, "variant") for c in schema.variant_cases(obj_type))
        source = source_for(want.command, want.path)
        live, likely = self._live(source, _at(want.given, path), want.prefix)
        for value, meta in live.items():
            values.setdefault(value, meta)
        return [Candidate(v, values[v]) for v in rank(want.prefix, values, likely)]

    def _hmp_word(self, want: HmpWord) -> list[Candidate]:
        """HMP command names, info's subcommands, and live values for the arguments that name a block
        device or a job (by the name HMP's help gives them)."""
        hmp = self._catalog.snapshot.hmp if self._catalog is not None else HmpHelp()
        if not want.before:
            return self._hmp_names(hmp.commands, want.prefix)
        command, args = hmp.commands.get(want.before[0]), want.before[1:]
        name = command.name if command else ""
        if name == "help" and not args:
            return self._hmp_names(hmp.commands, want.prefix)
        if name == "info":
            if not args:
                return self._hmp_names(hmp.info, want.prefix)
            command, args = hmp.info.get(args[0]), args[1:]
            name = f"info {command.name}" if command else ""
        position = len([a for a in args if not a.startswith("-")])  # -f and the like are flags
        if command is None or position >= len(command.args) or want.prefix.startswith("-"):
            return []
        values, likely = self._live(source_for(name, command.args[position], HMP_ARGUMENT_SOURCES), {},
                                    want.prefix)
        return [Candidate(v, values[v]) for v in rank(want.prefix, values, likely)]

    @staticmethod
    def _hmp_names(table: Mapping[str, HmpCommand], prefix: str) -> list[Candidate]:
        names = full_names(table)
        return [Candidate(n, names[n]) for n in rank(prefix, names)]

    def _live(self, source: Source | None, given: Mapping[str, object],
              prefix: str) -> tuple[dict[str, str], Mapping[str, int]]:
        """The catalog's values of ``source`` with their labels, and how likely each fits."""
        if source is None or self._catalog is None:
            return {}, {}
        snapshot = self._catalog.snapshot
        nodes = source in (Source.NODE, Source.ROOT)
        likely = snapshot.likely if source is Source.ROOT else {}
        values: dict[str, str] = {}
        for value in snapshot.get(source, given):
            # QEMU's automatic node names (#block123) only crowd the menu, unless asked for or a device's root.
            if value.startswith("#") and not prefix.startswith("#") and likely.get(value) != Likely.ROOT:
                continue
            values[value] = snapshot.labels.get(value, source.value) if nodes else source.value
        return values, likely


def readline_tab(text: str, completions: Sequence[Completion]) -> tuple[Completion | None, bool]:
    """What Tab writes at once after ``text``, as readline does: the only candidate (then True), or
    the start that all candidates beginning with the typed word share, if it adds to it (False)."""
    hits = [c for c in completions if c.text.startswith(text[len(text) + c.start_position:])] or list(completions)
    if len(hits) == 1:
        return hits[0], True
    starts = {c.start_position for c in hits}
    if len(starts) != 1:
        return None, False
    start = starts.pop()
    common = os.path.commonprefix([c.text for c in hits])  # noqa: RUF071 - a string's prefix, not a path's
    return (Completion(common, start) if len(common) > -start else None), False


class QmpCompleter(Completer):
    """prompt_toolkit's view of ``wanted`` + ``Sources``; ``hmp``: the lines are HMP commands (-H)."""

    def __init__(self, sources: Sources, hmp: bool = False) -> None:
        self.sources = sources
        self.hmp = hmp

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        want = wanted(document.text_before_cursor, self.hmp)
        if isinstance(want, Nothing):
            return
        typed = "/" + want.prefix if isinstance(want, BuiltinName) else want.prefix
        for candidate in self.sources.candidates(want):
            yield Completion(candidate.text, -len(typed), display_meta=candidate.meta or None)

