"""The interactive loop: prompt, history, multi-line input, events above the prompt."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app
from prompt_toolkit.buffer import Buffer, CompletionState
from prompt_toolkit.completion import CompleteEvent, Completion
from prompt_toolkit.cursor_shapes import ModalCursorShapeConfig
from prompt_toolkit.enums import EditingMode
from prompt_toolkit.filters import emacs_insert_mode, vi_insert_mode
from prompt_toolkit.history import DummyHistory, FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.patch_stdout import patch_stdout

from qmpsh import __version__, config
from qmpsh.catalog import Catalog
from qmpsh.cli import DEFAULT_HISTORY_SIZE
from qmpsh.completion import QmpCompleter, Sources, readline_tab
from qmpsh.histlimit import LimitedHistory, append, prepare, trim
from qmpsh.lexer import QmpLexer
from qmpsh.session import Session
from qmpsh.syntax import Continuation
from qmpsh.toolbar import Toolbar, job_row
from qmpsh.transport import ConnectFailure, TransportError


T = TypeVar("T")


def state_dir() -> Path:
    return Path(config.xdg_dir("XDG_STATE_HOME", os.path.join(".local", "state")))


class SharedHistory(FileHistory):
    """prompt_toolkit's history file, written so that sessions sharing it never mix their entries.

    Each entry is appended with a single ``write``, under the lock that keeps it
    from a file being trimmed (histlimit.append); the file is mode 0600, since
    commands can carry secrets. A write that fails warns once; the session goes on.
    """

    def __init__(self, filename: str, warn: Callable[[str], None]) -> None:
        super().__init__(filename)
        self._path = filename  # FileHistory's own filename is typed as any path, bytes too
        self._warn: Callable[[str], None] | None = warn

    def store_string(self, string: str) -> None:
        entry = f"\n# {datetime.datetime.now()}\n" + "".join(f"+{line}\n" for line in string.split("\n"))
        try:
            # a byte typed that is not UTF-8 is kept as it was
            append(Path(self._path), entry.encode("utf-8", "surrogateescape"))
        except OSError as err:
            if self._warn is not None:
                self._warn(f"history not saved: cannot write {self._path}: {err.strerror}")
                self._warn = None


def open_history(session: Session, size: int = DEFAULT_HISTORY_SIZE) -> History:
    """History under $XDG_STATE_HOME/qmpsh/ (0600), its newest ``size`` entries; in memory, with a
    warning, if that fails; none at all for size 0."""
    if size <= 0:
        return DummyHistory()
    return LimitedHistory(_open_history_file(session, size), size)


def _open_history_file(session: Session, size: int) -> History:
    path = state_dir() / "history"
    try:
        prepare(path)
    except OSError as err:
        session.renderer.note(f"history not saved: cannot write {path}: {err.strerror}")
        return InMemoryHistory()
    trim(path, size)
    return SharedHistory(str(path), session.renderer.note)


def key_bindings(hmp: bool) -> KeyBindings:
    bindings = KeyBindings()
    continuation = Continuation(hmp)
    needs_more = continuation.needs_more

    @bindings.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        """Run the input, unless brackets or a transaction are still open."""
        buffer = event.current_buffer
        if buffer.complete_state:
            if buffer.complete_state.current_completion:
                buffer.apply_completion(buffer.complete_state.current_completion)
            buffer.cancel_completion()
        if needs_more(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    offered: CompletionState | None = None  # the menu Tab opened last

    @bindings.add("tab", filter=emacs_insert_mode | vi_insert_mode)
    def _tab(event: KeyPressEvent) -> None:
        """Tab as in readline: the only candidate is written at once, else the part all candidates
        share, and the menu opens; Tab again goes into the menu. Worked out now, from the cache, so
        that keys typed right after Tab land after what it wrote."""
        nonlocal offered
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is not None and (state is offered or state.complete_index is not None):
            buffer.complete_next()
            return
        if buffer.completer is None:
            return
        completions = _completions(buffer)
        written, only = readline_tab(buffer.document.text_before_cursor, completions)
        if written is not None:
            buffer.complete_state = None
            buffer.delete_before_cursor(-written.start_position)
            buffer.insert_text(written.text, fire_event=False)  # no menu for what is written out
            completions = [] if only else _completions(buffer)
        if completions and (state is None or written is not None):  # else the menu is open already
            buffer.complete_state = CompletionState(buffer.document, completions)
        offered = buffer.complete_state

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add(Keys.BracketedPaste)
    def _paste(event: KeyPressEvent) -> None:
        """A paste that ends with a newline runs at once when it is complete."""
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        buffer = event.current_buffer
        buffer.insert_text(data.rstrip("\n") if data.endswith("\n") else data)
        if data.endswith("\n") and buffer.text.strip() and not needs_more(buffer.text):
            buffer.validate_and_handle()
        elif data.endswith("\n"):
            buffer.insert_text("\n")

    return bindings


def _completions(buffer: Buffer) -> list[Completion]:
    assert buffer.completer is not None
    return list(buffer.completer.get_completions(buffer.document, CompleteEvent(completion_requested=True)))


def prompt_message(session: Session) -> Callable[[], str]:
    """The prompt: ``(HMP)`` with -H, the domain's name on a libvirt domain (after a /connect too),
    else ``(QEMU)``; left out while the input starts with a pasted one: "(QEMU) (QEMU) cmd" looks wrong."""

    def message() -> str:
        if get_app().current_buffer.text.startswith(PASTED_PROMPTS):
            return ""
        domain = session.transport.domain
        return "(HMP) " if session.options.hmp else f"({domain}) " if domain is not None else "(QEMU) "

    return message


PASTED_PROMPTS = ("(QEMU) ", "(qemu) ")


def _continuation(width: int, line_number: int, wrap_count: int) -> str:
    """"TRANS> " in front of the lines of a transaction typed here (a pasted one brings its own)."""
    first_line = get_app().current_buffer.text.partition("\n")[0]
    opening = Continuation().context(first_line + " ")  # just after the first line's last word
    return "TRANS> " if opening.transaction and not opening.marker else "...".ljust(width)


RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # then every 8 s


async def _watch_connection(session: Session, prompt: PromptSession[str]) -> None:
    """Say at once when QEMU goes away, even while the user is typing; with --reconnect, get it back."""
    while True:
        while session.transport.running:
            await session.connection_changed()
        if session.finished:
            if prompt.app.is_running:
                prompt.app.exit(result="")
            return
        await session.lose("")
        if session.options.reconnect and not session.qemu_gone:
            await _reconnect_with_backoff(session)
        else:
            while session.lost:  # until /reconnect or /connect
                await session.connection_changed()
        prompt.app.invalidate()


async def _reconnect_with_backoff(session: Session) -> None:
    for attempt in itertools.count():
        await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
        try:
            await session.reconnect()
        except ConnectFailure:
            continue
        session.renderer.note(f"reconnected after {attempt + 1} attempt{'s' if attempt else ''}")
        return


def live_values(session: Session) -> Catalog:
    """The catalog of live values for completion, following the session from now on."""
    catalog = Catalog(session.query, hmp=session.options.hmp)
    session.subscribers.add(catalog)
    catalog.refresh()
    return catalog


def completer_for(session: Session, catalog: Catalog) -> QmpCompleter:
    """Completion from the session's schema (loading in the background) and ``catalog``'s live values."""
    session.start_loading_schema()  # completion and help use it even with --no-schema
    from qmpsh.targets import names_for_tab

    names_for_tab(session)  # with --domain: listed now, for the first Tab after /connect
    return QmpCompleter(Sources(lambda: session.schema, catalog, lambda: session.commands,
                                lambda: names_for_tab(session)), hmp=session.options.hmp)


async def interruptible(work: Awaitable[T]) -> T | None:
    """``work``, which Ctrl-C (SIGINT) stops, and nothing else: None if it was stopped.

    Outside the prompt (which reads Ctrl-C as a key) SIGINT would otherwise end the whole session,
    and with it a launched QEMU.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        this = asyncio.current_task()
        if this is not None and this.cancelling():  # qmpsh is told to end
            raise
        return None
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def run_interactive(session: Session, where: str, *,
                          history_size: int = DEFAULT_HISTORY_SIZE, editing_mode: str = "emacs") -> None:
    await interruptible(session.load_commands())
    completer = completer_for(session, live_values(session))
    toolbar = Toolbar(session)
    version = f" QEMU {toolbar.version}" if toolbar.version else ""
    prompt: PromptSession[str] = PromptSession(
        prompt_message(session),
        multiline=True,
        key_bindings=key_bindings(session.options.hmp),
        history=open_history(session, history_size),
        editing_mode=EditingMode.VI if editing_mode == "vi" else EditingMode.EMACS,
        cursor=ModalCursorShapeConfig() if editing_mode == "vi" else None,  # vi: block or beam by mode
        completer=completer,
        lexer=PygmentsLexer(QmpLexer),
        prompt_continuation=_continuation,
        enable_open_in_editor=False,
        bottom_toolbar=toolbar,
    )
    session.renderer.note(f"qmpsh {__version__} connected to{version} at {where}. /help for help, Ctrl-D to leave.")
    if session.launched is not None:
        session.renderer.note(f"QEMU was launched in {session.launched.workdir}; leaving stops it"
                              + (" and keeps the directory." if session.launched.given_workdir else
                                 ", and the directory goes unless you made files there."))
    with patch_stdout(raw=True):
        watcher = asyncio.create_task(_watch_connection(session, prompt))
        status = asyncio.create_task(toolbar.keep_current(prompt.app.invalidate))
        try:
            while not session.finished or not await _may_leave(session):
                session.stay()  # the user answered no
                try:
                    text = await prompt.prompt_async()
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    session.leave()
                    continue
                if text.strip() and await interruptible(session.run(text)) is None:
                    session.renderer.note("interrupted")
        finally:
            watcher.cancel()
            status.cancel()


async def _may_leave(session: Session) -> bool:
    """Whether to leave now. Leaving stops a launched QEMU: while block jobs run there, ask first.
    QEMU that qmpsh did not start keeps running, and so do its jobs: say so."""
    if session.quit_sent or session.lost:
        return True
    jobs = await interruptible(running_jobs(session))
    if jobs is None:  # Ctrl-C: stay
        return False
    if not jobs:
        return True
    names = ", ".join(jobs)
    if session.launched is None:
        session.renderer.note(f"QEMU keeps running, and so do its jobs: {names}")
        return True
    question: PromptSession[str] = PromptSession()
    try:
        answer = await question.prompt_async(f"Leaving stops the QEMU qmpsh launched, and with it {names}. "
                                             "Leave? [y/N] ")
    except KeyboardInterrupt:
        answer = ""
    except EOFError:  # Ctrl-D answers no; a terminal that is gone leaves nobody to ask
        return question.app.input.closed
    except OSError:
        return True
    return answer.strip().lower() in ("y", "yes")


async def running_jobs(session: Session) -> list[str]:
    """The jobs that have not concluded, as ``job0 (backup running 25%)``; none if QEMU cannot say."""
    try:
        jobs = await asyncio.wait_for(session.live.fresh_jobs(), 2.0)
    except (TransportError, TimeoutError):
        return []
    rows = [job_row(job) for job in jobs]
    return [f"{job_id} ({kind} {status}" + (f" {percent}%)" if percent is not None else ")")
            for job_id, kind, status, percent in rows if status not in ("concluded", "null")]
