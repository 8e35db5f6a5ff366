"""The live QMP schema (``query-qmp-schema``): commands, events, types; coercion.

Pure: built from the introspection reply, it never talks to the socket.
QEMU masks type names (``"41"``) but not command, event or member names, so
everything here is reached from a command or an event.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qmpsh.jsontypes import SchemaInfo, SchemaInfoMember, SchemaInfoObjectVariant

    Entry = SchemaInfo

#: Commands that take properties beyond their declared arguments (QAPI 'gen': false).
OPEN_COMMANDS = frozenset({"device_add"})

_TRUE = {"true", "on", "yes"}
_FALSE = {"false", "off", "no"}


@dataclass(frozen=True)
class Member:
    name: str
    type: str  # a (possibly masked) type name
    optional: bool


class SchemaError(ValueError):
    """A value that does not fit the schema; ``path`` is the dotted key it concerns."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest choices, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"


class Schema:
    def __init__(self, entries: Iterable[Entry]) -> None:
        """``entries``: the reply of query-qmp-schema."""
        self.types: dict[str, Entry] = {}
        self.commands: dict[str, Entry] = {}
        self.events: dict[str, Entry] = {}
        self._member_tables: dict[str, dict[str, Member]] = {}  # by _member_table
        for entry in entries:
            name = str(entry.get("name"))
            meta = entry.get("meta-type")
            if meta == "command":
                self.commands[name] = entry
            elif meta == "event":
                self.events[name] = entry
            else:
                self.types[name] = entry

    def __bool__(self) -> bool:
        return bool(self.commands)

    # -- shapes --------------------------------------------------------------

    def _members(self, type_name: str) -> list[SchemaInfoMember]:
        entry = self.types.get(type_name)
        return entry.get("members", []) if entry is not None else []

    def _variants(self, type_name: str) -> list[SchemaInfoObjectVariant]:
        entry = self.types.get(type_name)
        return entry.get("variants", []) if entry is not None else []

    def meta(self, type_name: str) -> str:
        """``builtin``, ``object``, ``enum``, ``array`` or ``alternate``."""
        entry = self.types.get(type_name)
        return str(entry.get("meta-type", "builtin")) if entry is not None else "builtin"

    def json_type(self, type_name: str) -> str:
        """For builtins: string, int, number, boolean, null, value, object, array."""
        entry = self.types.get(type_name)
        return str(entry.get("json-type", type_name)) if entry is not None else type_name

    def enum_values(self, type_name: str) -> list[str]:
        entry = self.types.get(type_name)
        values = entry.get("values") if entry is not None else None
        if values is None:  # QEMU 8.2+ describes members too
            values = [m["name"] for m in self._members(type_name)]
        return list(values)

    def element_type(self, type_name: str) -> str:
        entry = self.types.get(type_name)
        return str(entry.get("element-type", "any")) if entry is not None else "any"

    def alternatives(self, type_name: str) -> list[str]:
        """The branches of an alternate (nothing for any other type)."""
        if self.meta(type_name) != "alternate":
            return []
        return [str(m["type"]) for m in self._members(type_name)]

    def members(self, type_name: str, given: Mapping[str, object] | None = None) -> list[Member]:
        """An object's members; for a flat union, plus the branch that ``given`` selects."""
        out = [Member(str(m["name"]), str(m["type"]), "default" in m) for m in self._members(type_name)]
        tag = self.tag(type_name)
        if tag is not None and given is not None and isinstance(given.get(tag), str):
            for variant in self._variants(type_name):
                if variant["case"] == given[tag]:
                    out += self.members(str(variant["type"]), given)
        return out

    def tag(self, type_name: str) -> str | None:
        """The discriminator of a flat union, if the type is one."""
        entry = self.types.get(type_name)
        tag = entry.get("tag") if entry is not None else None
        return str(tag) if tag is not None else None

    def variant_cases(self, type_name: str) -> list[str]:
        return [str(v["case"]) for v in self._variants(type_name)]

    def block_drivers(self) -> list[str]:
        """The block drivers this QEMU has: blockdev-add's ``driver`` branches.

        They are what a ``format`` string argument takes (drive-mirror, drive-backup,
        blockdev-snapshot-sync ...), which the schema types only as a string.
        """
        options = self.arg_type("blockdev-add")
        return self.variant_cases(options) if options and self.tag(options) == "driver" else []

    def arg_type(self, name: str) -> str | None:
        """The argument type of a command or the data type of an event."""
        entry = self.commands.get(name) or self.events.get(name)
        return str(entry["arg-type"]) if entry and "arg-type" in entry else None

    def _action_union(self) -> str | None:
        """The flat union of transaction actions (``type`` + ``data``)."""
        type_name = self.arg_type("transaction")
        actions = next((m for m in self.members(type_name) if m.name == "actions"), None) if type_name else None
        return self.element_type(actions.type) if actions else None

    def action_names(self) -> list[str]:
        union = self._action_union()
        return self.variant_cases(union) if union else []

    def action_type(self, action: str) -> str | None:
        """The ``data`` type of a transaction action."""
        union = self._action_union()
        if union is None:
            return None
        data = next((m for m in self.members(union, {"type": action}) if m.name == "data"), None)
        return data.type if data else None

    def object_type(self, type_name: str) -> str | None:
        """The object inside ``type_name``: itself, or an alternate's object branch."""
        meta = self.meta(type_name)
        if meta == "object":
            return type_name
        if meta == "alternate":
            for alt in self.alternatives(type_name):
                if self.meta(alt) == "object":
                    return alt
        return None

    def members_at(self, type_name: str | None, path: Iterable[str], given: Mapping[str, object]) -> list[Member]:
        """The members of the object a dotted path leads to inside ``type_name`` (``file``: the
        file's own members), with the union branches that ``given`` selects; none if the path
        leads nowhere or to something that is no object."""
        here: Mapping[str, object] = given
        for key in path:
            obj = self.object_type(type_name) if type_name else None
            member = next((m for m in self.members(obj, here) if m.name == key), None) if obj else None
            if member is None:
                return []
            type_name = member.type
            nested = here.get(key)
            here = nested if isinstance(nested, Mapping) else {}
        obj = self.object_type(type_name) if type_name else None
        return self.members(obj, here) if obj else []

    def describe(self, type_name: str) -> str:
        """A readable type: ``string``, ``int``, ``enum``, ``array of string`` ..."""
        meta = self.meta(type_name)
        if meta == "builtin":
            return {"value": "any", "string": "string"}.get(self.json_type(type_name), self.json_type(type_name))
        if meta == "array":
            return f"array of {self.describe(self.element_type(type_name))}"
        if meta == "alternate":
            return " or ".join(self.describe(t) for t in self.alternatives(type_name))
        return meta

    # -- events ---------------------------------------------------------------

    def check_event(self, name: str, data: Mapping[str, object]) -> None:
        """Raise SchemaError for an event this QEMU never sends, or a data key (dotted: nested)
        its data never has: a /wait for it could never end."""
        if name not in self.events:
            raise SchemaError(f"unknown event '{name}'{did_you_mean(name, self.events)}")
        self._check_keys(name, data, data, ())

    def _check_keys(self, event: str, data: Mapping[str, object], here: Mapping[str, object],
                    path: tuple[str, ...]) -> None:
        """Check the keys of ``here``, the object at ``path`` in ``data``."""
        members = {m.name: m for m in self.members_at(self.arg_type(event), path, data)}
        for key, value in here.items():
            where = ".".join((*path, key))
            if key not in members:
                raise SchemaError(f"{event} has no data key '{where}'{did_you_mean(key, members)}", (*path, key))
            if isinstance(value, Mapping) and self.object_type(members[key].type):
                self._check_keys(event, data, value, (*path, key))

    # -- coercion ------------------------------------------------------------

    def coerce_arguments(self, command: str, arguments: Mapping[str, object]) -> dict[str, object]:
        """Check arguments against the command's schema and coerce typed values.

        Raises SchemaError for an unknown command or argument, a missing
        required argument or a value of the wrong kind.
        """
        if command not in self.commands:
            raise SchemaError(f"unknown command '{command}'{did_you_mean(command, self.commands)}")
        type_name = self.arg_type(command)
        if type_name is None:
            if arguments:
                raise SchemaError(f"{command} takes no arguments")
            return dict(arguments)
        return self._coerce_object(type_name, arguments, (), open_=command in OPEN_COMMANDS)

    def _coerce(self, type_name: str, value: object, path: tuple[str, ...]) -> object:
        meta = self.meta(type_name)
        if meta == "object":
            if not isinstance(value, Mapping):
                raise SchemaError(f"'{'.'.join(path)}' must be an object", path)
            return self._coerce_object(type_name, value, path)
        if meta == "enum":
            values = self.enum_values(type_name)
            if value not in values:
                raise SchemaError(f"'{'.'.join(path)}' must be one of {', '.join(values)}, not {value!r}"
                                  f"{did_you_mean(str(value), values)}", path)
            return value
        if meta == "array":
            if not isinstance(value, list):
                value = [value]  # qmp-shell users write a single element bare
            return [self._coerce(self.element_type(type_name), v, path) for v in value]
        if meta == "alternate":
            return self._coerce_alternate(type_name, value, path)
        return self._coerce_builtin(self.json_type(type_name), value, path)

    def _coerce_object(self, type_name: str, value: Mapping[str, object], path: tuple[str, ...],
                       open_: bool = False) -> dict[str, object]:
        members = self._member_table(type_name, value)
        tag = self.tag(type_name)
        if tag and isinstance(value.get(tag), str) and value[tag] not in self.variant_cases(type_name):
            cases = self.variant_cases(type_name)
            where = ".".join((*path, tag))
            raise SchemaError(f"'{where}' must be one of {', '.join(cases)}, not {value[tag]!r}"
                              f"{did_you_mean(str(value[tag]), cases)}", (*path, tag))
        out: dict[str, object] = {}
        for key, item in value.items():
            member = members.get(key)
            if member is None and open_:
                out[key] = item
                continue
            if member is None:
                where = ".".join((*path, key))
                raise SchemaError(f"unknown argument '{where}'{did_you_mean(key, members)}", (*path, key))
            out[key] = self._coerce(member.type, item, (*path, key))
        missing = [m.name for m in members.values() if not m.optional and m.name not in value]
        if missing:
            where = ".".join((*path, missing[0]))
            raise SchemaError(f"missing required argument '{where}'", (*path, missing[0]))
        return out

    def _member_table(self, type_name: str, given: Mapping[str, object]) -> dict[str, Member]:
        """An object's members by name: made once per type, but for a flat union's (they depend on ``given``)."""
        if self.tag(type_name) is not None:
            return {m.name: m for m in self.members(type_name, given)}
        table = self._member_tables.get(type_name)
        if table is None:
            table = self._member_tables[type_name] = {m.name: m for m in self.members(type_name)}
        return table

    def _coerce_alternate(self, type_name: str, value: object, path: tuple[str, ...]) -> object:
        branches = self.alternatives(type_name)
        for branch in branches:  # a value that already fits a branch as it is
            if self._fits(branch, value):
                return self._coerce(branch, value, path)
        for branch in branches:
            try:
                return self._coerce(branch, value, path)
            except SchemaError:
                continue
        raise SchemaError(f"'{'.'.join(path)}' must be {self.describe(type_name)}, not {value!r}", path)

    def _fits(self, type_name: str, value: object) -> bool:
        meta = self.meta(type_name)
        if meta == "object":
            return isinstance(value, Mapping)
        if meta == "array":
            return isinstance(value, list)
        if meta == "enum":
            return value in self.enum_values(type_name)
        kind = self.json_type(type_name)
        return {
            "string": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "null": value is None,
        }.get(kind, True)

    @staticmethod
    def _coerce_builtin(kind: str, value: object, path: tuple[str, ...]) -> object:
        where = ".".join(path)
        if kind == "string":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            if isinstance(value, bool):
                return "true" if value else "false"
            if not isinstance(value, str):
                raise SchemaError(f"'{where}' must be a string, not {value!r}", path)
        elif kind in ("int", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise SchemaError(f"'{where}' must be a number, not {value!r}", path)
            if isinstance(value, str):
                try:
                    value = _to_int(value) if kind == "int" else float(value)
                except ValueError:
                    raise SchemaError(f"'{where}' must be {'an integer' if kind == 'int' else 'a number'}, "
                                      f"not {value!r}", path) from None
            if kind == "int" and isinstance(value, float):
                if not value.is_integer():
                    raise SchemaError(f"'{where}' must be an integer, not {value!r}", path)
                value = int(value)
        elif kind == "boolean":
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            if not isinstance(value, bool):
                raise SchemaError(f"'{where}' must be true or false, not {value!r}", path)
        elif kind == "null" and value is not None:
            raise SchemaError(f"'{where}' must be null", path)
        return value


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKMGTPE])(?:i?B)?")
_SUFFIX = {"k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def _to_int(text: str) -> int:
    """``12``, ``012``, ``0x10``, and sizes as QEMU writes them: ``64K``, ``8M``, ``1.5G``."""
    try:
        return int(text)
    except ValueError:
        pass
    size = _SIZE.fullmatch(text.strip())
    if size:
        value = float(size.group(1)) * 1024 ** _SUFFIX[size.group(2)]
        if value.is_integer():
            return int(value)
    return int(text, 0)
