"""``/help COMMAND`` and ``/help EVENT``: the rows of its arguments (or data), from the live schema.

``views.HelpTable`` shows them: plain aligned text in scripts, a rich table at a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qmpsh.schema import Schema, did_you_mean

MAX_DEPTH = 3  # nested members shown this deep


@dataclass(frozen=True)
class Row:
    name: str  # dotted: file.driver
    type: str
    required: bool
    details: str  # enum values, or the branch members of a union


def rows(schema: Schema, type_name: str | None, given: Mapping[str, object], prefix: str = "",
         depth: int = 0) -> list[Row]:
    """One row per member, nested members after their object, union branches summarised."""
    if type_name is None:
        return []
    obj = schema.object_type(type_name)
    if obj is None:
        return []
    out: list[Row] = []
    here = given
    tag = schema.tag(obj)
    for member in schema.members(obj, here):
        details = ""
        if schema.meta(member.type) == "enum":
            details = "|".join(schema.enum_values(member.type))
        elif member.name == tag:
            details = "|".join(schema.variant_cases(obj))
        out.append(Row(prefix + member.name, schema.describe(member.type), not member.optional, details))
        inner = member.type if schema.meta(member.type) == "object" else None  # not node references
        if inner and depth < MAX_DEPTH:
            nested = here.get(member.name)
            out += rows(schema, inner, nested if isinstance(nested, Mapping) else {}, f"{prefix}{member.name}.",
                        depth + 1)
    if tag and depth == 0 and not isinstance(here.get(tag), str):
        base = {m.name for m in schema.members(obj)}
        for case in schema.variant_cases(obj):
            extra = [m.name for m in schema.members(obj, {tag: case}) if m.name not in base]
            if extra:
                out.append(Row(f"{prefix}[{tag}={case}]", "branch", False, " ".join(extra)))
    return out


def lookup(schema: Schema, name: str) -> tuple[str, str | None] | str:
    """(kind, type) for a command or event; or an error message with suggestions."""
    if name in schema.commands:
        return "command", schema.arg_type(name)
    if name in schema.events:
        return "event", schema.arg_type(name)
    return f"no command or event named '{name}'{did_you_mean(name, [*schema.commands, *schema.events])}"
