"""The built-ins' views: the JSON a script reads, the text a terminal of a given width shows, and which
form the renderer picks where."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from qmpsh.helptext import Row
from qmpsh.render import Renderer
from qmpsh.tree import _active, build, chain
from qmpsh.views import BlockTrees, DomainRow, DomainsTable, HelpTable, JobRow, JobsTable, ProgressView
from tests.conftest import REPO
from tests.data import load

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROWS: list[JobRow] = [
    {"id": "job0", "type": "stream", "status": "running", "progress": 1.3, "speed": 1048576},
    {"id": "j1", "type": "backup", "status": "aborting", "progress": None, "speed": 0, "error": "boom"},
]
HELP = HelpTable("command blockdev-add", [Row("driver", "BlockdevDriver", True, "qcow2|raw|file|nbd"),
                                          Row("file.filename", "string", False, "")])


@pytest.fixture(autouse=True)
def terminal_width(monkeypatch):
    """rich takes the terminal's width from COLUMNS first."""
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.delenv("NO_COLOR", raising=False)


def streamed_trees() -> BlockTrees:
    roots = build(load("block-graph-stream"), load("named-block-nodes-stream"))  # type: ignore[arg-type]
    return BlockTrees([{**root.as_json(), "chain": chain(_active(root))} for root in roots])


def test_jobs_table():
    table = JobsTable(ROWS)
    assert table.as_json() == ROWS and table.empty == "" and JobsTable([]).empty == "no jobs"
    assert table.drawn(colour=False) == "\n".join([
        "┏━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━┓",
        "┃ id   ┃ type   ┃ status   ┃ progress ┃ speed     ┃",
        "┡━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━┩",
        "│ job0 │ stream │ running  │ 1.3%     │ 1.0 MiB/s │",
        "│ j1   │ backup │ aborting │          │ unlimited │",
        "└──────┴────────┴──────────┴──────────┴───────────┘",
    ])
    assert "\x1b[1mid  \x1b[0m" in table.drawn(colour=True)  # bold headings


def test_block_trees():
    trees = streamed_trees()
    assert trees.as_json()[0]["chain"] == ["node-A", "node-B", "node-C", "node-D"]
    assert trees.as_json()[0]["children"][0]["node-name"] == "#block1231"
    assert trees.drawn(colour=False) == "\n".join([
        "/machine/peripheral/virtio0/virtio-backend  block-backend",
        "└── root:  #block1231  copy-on-read  d.qcow2",
        "    └── file:  node-D  qcow2  d.qcow2",
        "        └── backing:  node-C  qcow2  c.qcow2",
        "            └── backing:  node-B  qcow2  b.qcow2",
        "                └── backing:  node-A  qcow2  a.qcow2",
        "  chain: [node-A] <- [node-B] <- [node-C] <- [node-D]",
    ])
    coloured = trees.drawn(colour=True)
    assert "\x1b[2mroot:\x1b[0m  \x1b[1m#block1231\x1b[0m  copy-on-read" in coloured
    assert "\x1b[1mnode-A\x1b[0m  qcow2" in coloured  # a name is bold, its digits not picked out
    assert BlockTrees([]).empty == "no block nodes"


def test_a_tree_draws_names_as_they_are():
    node = {"node-name": "[bold]x[/bold]", "driver": "raw", "file": "", "chain": ["[bold]x[/bold]"]}
    assert BlockTrees([node]).drawn(colour=False) == "[bold]x[/bold]  raw"  # type: ignore[list-item]


def test_help_table_is_plain_text_without_colour():
    assert HELP.as_json() is None and HELP.empty == ""
    assert HELP.drawn(colour=False) == "\n".join([
        "command blockdev-add",
        "  driver         BlockdevDriver  required  qcow2|raw|file|nbd",
        "  file.filename  string          optional",
    ])
    assert HelpTable("event STOP", [], "data").drawn(colour=False) == "event STOP\n  (no data)"


def test_help_table_folds_to_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    drawn = HELP.drawn(colour=True)
    assert drawn.startswith("\x1b[3mcommand blockdev-add                    \x1b[0m\n")  # as wide as the terminal
    assert ANSI.sub("", drawn).splitlines()[1:] == [
        "┏━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┓",
        "┃         ┃         ┃        ┃ values  ┃",
        "┃ argumen ┃         ┃        ┃ /       ┃",
        "┃ t       ┃ type    ┃        ┃ members ┃",
        "┡━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━┩",
        "│ driver  │ Blockde │ requir │ qcow2|r │",
        "│         │ vDriver │ ed     │ aw|file │",
        "│         │         │        │ |nbd    │",
        "│ file.fi │ string  │        │         │",
        "│ lename  │         │        │         │",
        "└─────────┴─────────┴────────┴─────────┘",
    ]


def test_domains_table(capsys):
    rows = [DomainRow(name="vm1", id=3, state="running"), DomainRow(name="database", id=12, state="paused")]
    assert DomainsTable(rows, "qemu:///system").drawn(colour=True).splitlines() == [
        "vm1          3  running",
        "database    12  paused"]
    Renderer().show(DomainsTable(rows, "qemu:///system"))
    Renderer(interactive=True).show(DomainsTable([], "qemu:///system"))
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"name": "vm1", "id": 3, "state": "running"},
                               {"name": "database", "id": 12, "state": "paused"}]
    assert err == "no running domains at qemu:///system\n"


@pytest.mark.parametrize("interactive, colour", [(False, False), (False, True)])
def test_a_script_gets_the_json_on_stdout(capsys, interactive, colour):
    Renderer(interactive=interactive).show(JobsTable(ROWS))
    Renderer(interactive=interactive).show(JobsTable([]))
    Renderer(interactive=interactive, colour=colour).show(HELP)  # text for people: plain, on stderr, in scripts
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [ROWS, []]
    assert err == HELP.drawn(colour=False) + "\n"


def test_a_terminal_gets_the_view_or_a_note(capsys):
    Renderer(interactive=True).show(JobsTable(ROWS))
    Renderer(interactive=True).show(JobsTable([]))
    Renderer(interactive=True, colour=True).show(HELP)
    out, err = capsys.readouterr()
    assert out == JobsTable(ROWS).drawn(colour=False) + "\n"
    assert err == "no jobs\n" + HELP.drawn(colour=True) + "\n"


def test_a_script_that_shows_views_imports_no_rich():
    code = ("import sys\n"
            "from qmpsh.render import Renderer\n"
            "from qmpsh.views import BlockTrees, HelpTable, JobsTable\n"
            "for view in JobsTable([]), BlockTrees([]), HelpTable('command stop', []):\n"
            "    Renderer().show(view)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n[]\n" and done.stderr.endswith("[]\n")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_prints_above_itself_in_binary_units_and_leaves_no_trace(monkeypatch):
    terminal = Tty()
    monkeypatch.setattr(sys, "__stdout__", terminal)  # the bar draws on the real terminal, not on sys.stdout
    bar = ProgressView("job0", colour=False)
    with bar:
        bar.update("job0 stream running", total=8 * 2**20, completed=2**20)
        bar.print("\x1b[32mgreen\x1b[0m above")
    drawn = ANSI.sub("", terminal.getvalue())
    assert "green above\n" in drawn and "job0 stream running" in drawn and "12% 1.0/8.0 MiB" in drawn
    assert "\x1b[32m" not in terminal.getvalue()  # no colour, as asked
    assert terminal.getvalue().endswith("\x1b[2K")  # erased when it is done
