"""The shell's own built-in commands, written ``/name`` so they never clash with QMP."""

from __future__ import annotations

import asyncio
import inspect
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from qmpsh.events import event_filter
from qmpsh.syntax import Builtin

if TYPE_CHECKING:
    from qmpsh.session import Session

DEFAULT_WAIT_TIMEOUT = 60.0

Handler = Callable[["Session", Builtin], Awaitable[bool]]


async def wait(session: Session, cmd: Builtin) -> bool:
    """/wait EVENT [key=value ...] [timeout=SECONDS]: wait for an event whose data has these values.

    Events count from the first command after the previous /wait or /job, and the
    one that matches is used up. An event about a job (JOB_STATUS_CHANGE id=,
    BLOCK_JOB_* device=) counts only if it came after that job was created: when
    a job id is used again (the document runs every job as job0), the events of
    the earlier job with that id never match. EVENT and the keys are checked
    against QEMU's schema (not with --no-schema). timeout=0 waits without end
    (60 s by default); a lost connection ends the wait at once.
    """
    if len(cmd.words) != 1:
        session.renderer.error("usage: /wait EVENT [key=value ...] [timeout=SECONDS]")
        return False
    name = cmd.words[0]
    wanted = dict(cmd.args)
    timeout = wanted.pop("timeout", DEFAULT_WAIT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, str)):
        session.renderer.error(f"/wait: timeout must be a number of seconds, not {timeout!r}")
        return False
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # NaN too: it compares false with everything, so it would wait without end
        session.renderer.error(f"/wait: timeout must be a number of seconds (0: no end), not {timeout!r}")
        return False
    never = await _never_sent(session, name, wanted)
    if never:
        session.renderer.error(f"/wait: {never}")
        return False
    started = time.monotonic()
    try:
        await session.unless_lost(session.events.wait(event_filter(name, wanted), seconds if seconds > 0 else None))
    except TimeoutError:
        what = " ".join([name, *(f"{k}={v}" for k, v in wanted.items())])
        session.renderer.error(f"/wait: no {what} within {seconds:g} s")
        return False
    if session.options.interactive:
        session.renderer.note(f"/wait: {name} after {time.monotonic() - started:.1f} s")
    return True


async def _never_sent(session: Session, name: str, data: dict[str, object]) -> str | None:
    """Why QEMU's schema says no such event can come (an unknown name or data key), or None."""
    schema = await session.ensure_schema() if session.options.use_schema else None
    if schema is None:
        return None
    from qmpsh.schema import SchemaError  # loaded with the schema

    try:
        schema.check_event(name, data)
    except SchemaError as err:
        return str(err)
    return None


async def quit_shell(session: Session, cmd: Builtin) -> bool:
    """/quit: leave qmpsh (QEMU keeps running; the QMP command quit stops QEMU)."""
    session.leave()
    return True


QUIT_LAUNCHED = "/quit: leave qmpsh and stop the QEMU it launched (at a terminal, asks first while jobs run)"


async def show_help(session: Session, cmd: Builtin) -> bool:
    """/help [COMMAND|EVENT|/BUILT-IN]: built-ins, a command's arguments (also COMMAND?), or a built-in in full"""
    if cmd.words and cmd.words[0].startswith("/"):
        return _help_builtin(session, cmd.words[0][1:])
    if cmd.words:
        return await _help_topic(session, cmd.words[0], cmd.args)
    lines = ["Built-ins:"]
    for name, handler in BUILTINS.items():
        doc = (handler.__doc__ or "").strip().splitlines()[0]
        if handler is quit_shell and session.launched is not None:
            doc = QUIT_LAUNCHED
        lines.append(f"  {doc}" if doc.startswith("/") else f"  /{name}  {doc}")
    lines += [
        "Input:",
        "  command key=value ...      dotted keys nest (file.driver=file), values may be JSON",
        '  {"execute": "command", "arguments": {...}}   raw QMP, over several lines if needed',
        "  transaction( ... )         one action per line, then )",
        "  pasted '(QEMU) ', '-> ' and '<- ' doc lines work as they are",
    ]
    session.renderer.err("\n".join(lines))
    return True


def _help_builtin(session: Session, name: str) -> bool:
    """A built-in's whole help text."""
    handler = BUILTINS.get(name)
    if handler is None:
        from qmpsh.schema import did_you_mean

        session.renderer.error(f"/help: no built-in /{name}{did_you_mean('/' + name, ['/' + b for b in BUILTINS])}")
        return False
    session.renderer.err(inspect.cleandoc(handler.__doc__ or f"/{name}"))
    return True


async def _help_topic(session: Session, name: str, given: Mapping[str, object]) -> bool:
    from qmpsh import helptext
    from qmpsh.views import HelpTable

    schema = await session.ensure_schema()
    if schema is None:
        session.renderer.error("/help: the server has no schema to describe its commands")
        return False
    found = helptext.lookup(schema, name)
    if isinstance(found, str):
        session.renderer.error(f"/help: {found}")
        return False
    kind, type_name = found
    table = helptext.rows(schema, type_name, given)
    title = f"{kind} {name}" + "".join(f" {k}={v}" for k, v in given.items())
    members = "data" if kind == "event" else "arguments"
    session.renderer.show(HelpTable(title, table, members))
    return True


async def events(session: Session, cmd: Builtin) -> bool:
    """/events [all | only NAME... | hide NAME...]: recent events, or which events print inline"""
    from qmpsh.events import EventFilter

    if not cmd.words:
        for event in session.ring.events:
            session.renderer.event(event)
        dropped = f", {session.ring.dropped} older ones dropped" if session.ring.dropped else ""
        session.renderer.note(f"{len(session.ring.events)} events kept{dropped}; "
                              f"printing inline: {session.options.event_filter}")
        return True
    mode, *names = cmd.words
    if mode != "all" and not names:
        session.renderer.error(f"/events {mode} needs event names")
        return False
    try:
        session.options = session.options._replace(event_filter=EventFilter(mode, tuple(names)))
    except ValueError as err:
        session.renderer.error(f"/events: {err}")
        return False
    session.renderer.note(f"printing inline: {session.options.event_filter}")
    return True


async def reconnect(session: Session, cmd: Builtin) -> bool:
    """/reconnect: connect again to the same QEMU (its schema and live values are fetched anew)."""
    from qmpsh.transport import ConnectFailure

    if session.qemu_gone:
        assert session.launched is not None
        session.renderer.error(f"/reconnect: the QEMU qmpsh launched {session.launched.exit_report()}\n"
                               "  start it again with qmpsh --launch")
        return False
    try:
        await session.reconnect()
    except ConnectFailure as err:
        session.renderer.error(f"/reconnect: {err}")
        return False
    session.renderer.note(f"connected to {session.transport.where}")
    return True


async def shell(session: Session, cmd: Builtin) -> bool:
    """/shell COMMAND: run COMMAND with sh, in the --launch work directory (else here), e.g. qemu-img create.

    Pasted documentation's "$ qemu-img ..." lines are skipped with a note naming the /shell line
    that runs them. At a terminal the command has the terminal; in a script its output goes to
    stderr (stdout stays JSON lines) and its input is empty. A command that exits with a status
    other than 0 fails the line; Ctrl-C stops it.
    """
    if not cmd.text:
        session.renderer.error("usage: /shell COMMAND")
        return False
    interactive = session.options.interactive
    session.renderer.flush()
    process = await asyncio.create_subprocess_shell(
        cmd.text, cwd=session.launched.workdir if session.launched is not None else None,
        stdin=None if interactive else asyncio.subprocess.DEVNULL,
        stdout=None if interactive else sys.stderr.fileno(),
    )
    try:
        status = await process.wait()
    except asyncio.CancelledError:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if status != 0:
        session.renderer.error(f"/shell: {cmd.text} exited with status {status}")
        return False
    return True


# /job, /jobs and /tree live in their own modules, imported when first used: every session builds
# this table, and a script that never follows a job should not load them.


async def job(session: Session, cmd: Builtin) -> bool:
    """/job JOB-ID [timeout=SECONDS]: wait until the job is ready or has concluded.

    Like /wait, it counts the job's events only from the job's creation: the end
    of an earlier job with the same id never ends it; a lost connection ends it at once.
    """
    from qmpsh.jobs import follow

    return await session.unless_lost(follow(session, cmd))


async def jobs(session: Session, cmd: Builtin) -> bool:
    """/jobs: the current jobs (id, type, status, progress, speed)."""
    from qmpsh.jobs import list_jobs

    return await list_jobs(session, cmd)


async def tree(session: Session, cmd: Builtin) -> bool:
    """/tree: the block graph of every device, with its backing chain."""
    from qmpsh.tree import show_tree

    return await show_tree(session, cmd)


async def domains(session: Session, cmd: Builtin) -> bool:
    """/domains: the running domains (name, id, state) of libvirt at -c, else at libvirt's default URI."""
    from qmpsh.targets import list_domains

    return await list_domains(session, cmd)


async def connect(session: Session, cmd: Builtin) -> bool:
    """/connect DOMAIN|ADDRESS: move to another libvirt domain, or to a socket (a path, HOST:PORT).

    The new connection is opened first: if it fails, the session stays where it was. Once it is
    open the old one is closed, and the schema, the command list and the live values are fetched
    anew. DOMAIN is looked up at -c's URI, else at libvirt's default; Tab offers the running
    domains' names. A word with no "/" is a domain when one of that name is running, else a
    socket file of that name here if there is one; ./NAME is always the file. Not in a --launch
    session.
    """
    from qmpsh.targets import connect as connect_to

    return await connect_to(session, cmd)


async def save(session: Session, cmd: Builtin) -> bool:
    """/save FILE: write the session so far as a script qmpsh can run again (a new file, never over one).

    It holds the commands that succeeded, in order, as they were sent: key=value where that reads
    back exactly, else JSON; the /wait, /job, /shell and /connect lines that succeeded (a rerun
    moves to the same other QEMU at the same point); and a comment header (date, QEMU version,
    the address it started at). Run it with: qmpsh ADDRESS < FILE. A script keeps such a record
    only with --record FILE.
    """
    if len(cmd.words) != 1 or cmd.args:
        session.renderer.error("usage: /save FILE")
        return False
    if session.recorder is None:
        session.renderer.error("/save: a script keeps no record of itself; run it with --record FILE")
        return False
    from qmpsh.record import header
    from qmpsh.record import save as write

    path, lines = cmd.words[0], session.recorder.lines
    try:
        write(path, header(session.recorder.first or session.transport) + lines)
    except OSError as err:
        session.renderer.error(f"/save: cannot write {path}: {err.strerror}")
        return False
    session.renderer.note(f"saved {len(lines)} line{'s' if len(lines) != 1 else ''} to {path}")
    return True


SOURCE_DEPTH = 16  # /source inside /source, at most this deep (a file that sources itself ends here)
_sourcing: list[str] = []  # the files /source runs now, outermost first


async def source(session: Session, cmd: Builtin) -> bool:
    """/source FILE: run the script FILE here, each line shown (+ LINE) before what it prints.

    It stops at the first line that fails, and says which; Ctrl-C stops it too. Tab completes FILE.
    """
    if len(cmd.words) != 1 or cmd.args:
        session.renderer.error("usage: /source FILE")
        return False
    path = cmd.words[0]
    if len(_sourcing) >= SOURCE_DEPTH:
        session.renderer.error(f"/source: {path}: files source each other more than {SOURCE_DEPTH} deep")
        return False
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as script:
            lines = script.read().splitlines()
    except OSError as err:
        session.renderer.error(f"/source: cannot read {path}: {err.strerror}")
        return False
    _sourcing.append(path)
    try:
        return await _run_lines(session, path, lines)
    finally:
        _sourcing.pop()


async def _run_lines(session: Session, path: str, lines: list[str]) -> bool:
    from qmpsh.syntax import Reader

    reader = Reader(BUILTINS, hmp=session.options.hmp)  # its own: the prompt's reader is between lines
    for lineno, line in enumerate(lines, 1):
        session.renderer.echo(line)
        parsed = reader.add_line(line, lineno)
        if parsed.incomplete:
            continue
        if not await session.run_items(parsed.items) or session.stopped:
            session.renderer.error(f"/source: stopped at {path}:{lineno}: {line}")
            return False
    unfinished = reader.end_of_input()
    if unfinished is not None:
        session.fail_parse(unfinished)
        session.renderer.error(f"/source: stopped at the end of {path}: its last input is not finished")
        return False
    return True


BUILTINS: dict[str, Handler] = {"wait": wait, "job": job, "jobs": jobs, "events": events, "tree": tree,
                                "reconnect": reconnect, "connect": connect, "domains": domains, "shell": shell,
                                "save": save, "source": source, "help": show_help, "quit": quit_shell}
