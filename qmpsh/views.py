"""What built-ins hand the renderer: their data, with its JSON form and its look at a terminal.

A built-in builds a view and calls ``session.renderer.show(view)``; the renderer picks the form
(JSON on stdout in scripts, the view drawn at a terminal) and owns the streams. The drawing is
rich's, and this is the only module that imports rich or makes a rich console: always inside the
function that draws, so that a script, which builds views too, never loads rich.

The ``/job`` progress bar is drawn here as well, live on the real terminal; while it is up the
renderer's output goes above it (``Renderer.sink``).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TextIO, TypedDict

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task
    from rich.text import Text
    from rich.tree import Tree

    from qmpsh.helptext import Row


class JobRow(TypedDict):
    """A row of /jobs, as a script reads it."""

    id: object
    type: object
    status: object
    progress: float | None  # percent
    speed: object  # a block job's, in bytes per second (0: unlimited)
    error: NotRequired[object]  # only when the job has one


#: A node of /tree as a script reads it; a device's tree also has its backing "chain".
TreeJSON = TypedDict("TreeJSON", {"node-name": str, "driver": str, "file": str, "edge": NotRequired[str],
                                  "children": NotRequired[list["TreeJSON"]], "chain": NotRequired[list[str]]})


def _console(file: TextIO | None, *, terminal: bool, no_color: bool | None = None, highlight: bool = True) -> Console:
    """The one place qmpsh makes a rich console."""
    from rich.console import Console

    return Console(file=file, force_terminal=terminal, no_color=no_color, highlight=highlight)


def _drawn(draw: Callable[[Console], None], colour: bool, highlight: bool = True) -> str:
    """What ``draw`` prints, at the terminal's width, in colour or not, without its last newline."""
    out = io.StringIO()
    draw(_console(out, terminal=colour, highlight=highlight))
    return out.getvalue().removesuffix("\n")


def binary_rate(speed: float) -> str:
    """``8.0 MiB/s`` for 8388608: QEMU's sizes and speeds are binary."""
    from rich.filesize import pick_unit_and_suffix

    unit, suffix = pick_unit_and_suffix(int(speed), ["B", "KiB", "MiB", "GiB", "TiB"], 1024)
    return f"{speed / unit:.1f} {suffix}/s"


@dataclass(frozen=True)
class JobsTable:
    """``/jobs``: a row per job."""

    rows: list[JobRow]

    @property
    def empty(self) -> str:
        return "" if self.rows else "no jobs"

    def as_json(self) -> list[JobRow]:
        return self.rows

    def drawn(self, colour: bool) -> str:
        from rich.table import Table

        table = Table("id", "type", "status", "progress", "speed")
        for row in self.rows:
            progress = "" if row["progress"] is None else f"{row['progress']}%"
            speed = row["speed"]
            shown = "" if not isinstance(speed, (int, float)) else binary_rate(speed) if speed else "unlimited"
            table.add_row(str(row["id"]), str(row["type"]), str(row["status"]), progress, shown)
        return _drawn(lambda console: console.print(table), colour)


class DomainRow(TypedDict):
    """A row of /domains, as a script reads it."""

    name: str
    id: int
    state: str


@dataclass(frozen=True)
class DomainsTable:
    """``/domains``: a line per running domain of the connection at ``uri`` (name, id, state)."""

    rows: list[DomainRow]
    uri: str

    @property
    def empty(self) -> str:
        return "" if self.rows else f"no running domains at {self.uri}"

    def as_json(self) -> list[DomainRow]:
        return self.rows

    def drawn(self, colour: bool) -> str:
        width = max(len(row["name"]) for row in self.rows)
        return "\n".join(f"{row['name']:<{width}}  {row['id']:>4}  {row['state']}" for row in self.rows)


@dataclass(frozen=True)
class BlockTrees:
    """``/tree``: a tree of nodes per device, each with its backing chain ``[A] <- [B]``."""

    trees: list[TreeJSON]

    @property
    def empty(self) -> str:
        return "" if self.trees else "no block nodes"

    def as_json(self) -> list[TreeJSON]:
        return self.trees

    def drawn(self, colour: bool) -> str:
        return _drawn(self._draw, colour, highlight=False)  # node names are names: no numbers picked out

    def _draw(self, console: Console) -> None:
        from rich.tree import Tree

        for root in self.trees:
            tree = Tree(_label(root))
            _add(tree, root)
            console.print(tree)
            chain = root.get("chain", [])
            if len(chain) > 1:
                console.print("  chain: " + " <- ".join(f"[{name}]" for name in chain), markup=False)


def _label(node: TreeJSON) -> str:
    from rich.markup import escape

    edge = node.get("edge")
    parts = [f"[dim]{edge}:[/dim]" if edge else "", f"[bold]{escape(node['node-name'])}[/bold]",
             escape(node["driver"]), escape(node["file"])]
    return "  ".join(p for p in parts if p)


def _add(tree: Tree, node: TreeJSON) -> None:
    for child in node.get("children", []):
        _add(tree.add(_label(child)), child)


@dataclass(frozen=True)
class HelpTable:
    """``/help COMMAND`` or ``/help EVENT``: its members, a row each. Text for people, so no JSON form:
    the renderer puts it on stderr, as a rich table at a terminal in colour, else as plain text."""

    title: str
    rows: list[Row]
    members: str = "arguments"  # what the rows are: a command's "arguments", an event's "data"

    empty = ""

    def as_json(self) -> None:
        return None

    def drawn(self, colour: bool) -> str:
        if not colour:
            return self.plain()
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", show_lines=False, expand=False)
        for heading in ("argument" if self.members == "arguments" else self.members, "type", "", "values / members"):
            table.add_column(heading, overflow="fold")
        for row in self.rows:
            table.add_row(row.name, row.type, "required" if row.required else "", row.details)
        return _drawn(lambda console: console.print(table), colour)

    def plain(self) -> str:
        """The rows as aligned text."""
        if not self.rows:
            return self.title + f"\n  (no {self.members})"
        lines = [self.title]
        width = max(len(r.name) for r in self.rows)
        type_width = max(len(r.type) for r in self.rows)
        for row in self.rows:
            need = "required" if row.required else "" if row.type == "branch" else "optional"
            lines.append(f"  {row.name:<{width}}  {row.type:<{type_width}}  {need:<8}  {row.details}".rstrip())
        return "\n".join(lines)


def _binary_rate(task: Task) -> Text:
    """MiB/s rather than rich's MB/s: QEMU's sizes and speeds are binary."""
    from rich.text import Text

    speed = task.finished_speed or task.speed
    return Text("?" if speed is None else binary_rate(speed), style="progress.data.speed")


class ProgressView:
    """A job's progress bar, drawn live under the real terminal's last line; text printed through it goes above."""

    def __init__(self, description: str, colour: bool) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress, ProgressColumn, TaskProgressColumn,
                                   TextColumn, TimeRemainingColumn)

        class BinaryRateColumn(ProgressColumn):
            """The rate in the units DownloadColumn(binary_units=True) uses (QEMU's speed=8M is 8 MiB/s)."""

            def render(self, task: Task) -> Text:
                return _binary_rate(task)

        console = _console(sys.__stdout__, terminal=True, no_color=not colour)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 DownloadColumn(binary_units=True), BinaryRateColumn(), TimeRemainingColumn(),
                                 console=console, transient=True, refresh_per_second=8)
        self.task = self.progress.add_task(description, total=None)

    def update(self, description: str, total: float | None = None, completed: float | None = None) -> None:
        """A new description, and the total and the part done when given."""
        self.progress.update(self.task, description=description, total=total, completed=completed)

    def print(self, text: str) -> None:
        """``text`` (with its ANSI colours) above the bar."""
        from rich.text import Text

        self.progress.console.print(Text.from_ansi(text), soft_wrap=True)

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
