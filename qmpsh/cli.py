"""Command line: arguments, the address, interactive or scripted mode, exit status."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import gc
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from qmpsh import __version__, config

if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace

    from qmpsh.launch import LaunchedQemu
    from qmpsh.logfile import Logfile
    from qmpsh.record import Recorder
    from qmpsh.session import Session
    from qmpsh.transcript import Step
    from qmpsh.transport import Transport

    Arguments = argparse.Namespace | SimpleNamespace  # the parser's, or a plain command line's (_plain_arguments)


class ExitStatus(enum.IntEnum):
    OK = 0  # every line succeeded; or quit
    FAILED = 1  # a line failed: QMP error reply, parse error, /wait timeout
    USAGE = 2  # bad command line, unusable logfile or stdout, QEMU not installed for --launch
    CONNECTION = 3  # could not connect, or the connection was lost
    READER_GONE = 141  # stdout's reader went away: what a shell shows for a program SIGPIPE stopped (cat, jq)


SCRIPT_TIMEOUT = 300.0
DEFAULT_HISTORY_SIZE = 1000

#: Every option's default, by the parser's dest: the one place they are set. The parser takes them
#: (``set_defaults``), and so does a command line of only ADDRESS and FILEs read without the parser.
DEFAULTS: dict[str, object] = {
    "verbose": False, "pretty": False, "logfile": None, "skip_negotiation": False, "hmp": False,
    "exit_on_error": False, "echo": False, "no_schema": False, "color": "auto", "events": "all",
    "timestamps": "absolute", "timeout": None, "wait_for_socket": 0.0, "reconnect": False,
    "history_size": DEFAULT_HISTORY_SIZE, "editing_mode": "emacs", "launch": False, "workdir": None,
    "domain": None, "connect": None, "export": None, "replay": None, "record": None,
}

SUMMARY = "an interactive shell for the QEMU Machine Protocol (QMP)"
DESCRIPTION = (
    f"qmpsh is {SUMMARY}, a drop-in replacement for QEMU's qmp-shell. At a terminal it completes commands, "
    "arguments and live values (node names, job ids) from the QEMU it is connected to, checks arguments against "
    "QEMU's schema, and prints events the moment they arrive. With its input from a file or a pipe it runs a "
    "script: replies and events go to stdout as JSON lines, and the exit status says how it went."
)

# The text after the options, as data: --help prints it (EPILOG) and the man page
# (qmpsh.manpage) turns each section into one of its own, so the two never differ.
HELP_SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    ("input", [
        ("command key=value ...", "qmp-shell syntax; dotted keys nest, values may be JSON"),
        ('{"execute": ...}', "raw QMP JSON, over several lines if needed"),
        ("transaction( ... )", "qmp-shell's transaction form"),
        ("(QEMU) / -> / <- lines", "pasted documentation works as it is"),
        ("!command key=value ...", "send as typed: no schema checking or coercion for this line"),
        ("/wait /job /jobs /tree /events /reconnect /connect /domains /help /quit", "built-ins (/help describes them)"),
    ]),
    ("exit status", [
        ("0", "every line succeeded (or quit)"),
        ("1", "a line failed (QMP error, parse error, /wait timeout)"),
        ("2", "usage error (bad option, config file or logfile), or stdout cannot be written"),
        ("3", "connection failed or lost"),
        ("141", "stdout's reader went away (as for a program stopped by SIGPIPE)"),
        ("129, 143", "hung up (SIGHUP) or told to end (SIGTERM); a launched QEMU was stopped cleanly first"),
    ]),
    ("environment", [
        ("QMP_SOCKET", "the QMP server when no ADDRESS is given"),
        ("QMPSH_CONFIG", "the config file to read instead of the default one (empty: none)"),
        ("NO_COLOR", "no colour with --color auto"),
        ("XDG_CONFIG_HOME, XDG_STATE_HOME", "where the config file and the history live"),
        ("QMPSH_QEMU, QMPSH_QEMU_IMG", "the programs --launch runs (default: qemu-system-x86_64, qemu-img)"),
        ("LIBVIRT_DEFAULT_URI", "libvirt's URI for --domain when no -c/--connect is given"),
    ]),
    ("files", [
        ("$XDG_CONFIG_HOME/qmpsh/config.toml", "defaults for options (~/.config/qmpsh/config.toml): the TOML keys "
                                                f"{', '.join(config.KEYS)} take the values of the options of the "
                                                "same name; options given on the command line win"),
        ("$XDG_STATE_HOME/qmpsh/history", "the command history (~/.local/state/qmpsh/history), mode 0600"),
    ]),
]


def _format_sections(sections: list[tuple[str, list[tuple[str, str]]]], width: int = 79) -> str:
    out = []
    for title, items in sections:
        out.append(f"{title}:")
        column = min(max(len(term) for term, _ in items), 26) + 2
        for term, text in items:
            lines = textwrap.wrap(text, width - column - 2, break_on_hyphens=False)
            if len(term) > column - 2:
                out.append(f"  {term}")
                out += [f"  {' ' * column}{line}" for line in lines]
            else:
                out.append(f"  {term:<{column}}{lines[0]}")
                out += [f"  {' ' * column}{line}" for line in lines[1:]]
        out.append("")
    return "\n".join(out).rstrip("\n")


EPILOG = _format_sections(HELP_SECTIONS)


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, as wide as the terminal, found without shutil.

    argparse makes a formatter for every add_argument call, and its default width comes from
    shutil.get_terminal_size(): importing shutil (with bz2, lzma and zlib) costs a start-up 3 ms.
    This reads the size the same way: $COLUMNS, then stdout's terminal, then 80.
    """
    import argparse

    return argparse.RawDescriptionHelpFormatter(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="qmpsh",
        description=textwrap.fill(DESCRIPTION, 79),
        epilog=EPILOG,
        formatter_class=_help_formatter,
    )
    parser.add_argument("address", nargs="?", metavar="ADDRESS",
                        help="QMP server: a unix socket path or HOST:PORT (default: $QMP_SOCKET)")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="script files to run in order instead of stdin (- is stdin); a file may start with "
                             "a #! line such as '#!/usr/bin/env -S qmpsh -e' (the address from $QMP_SOCKET, "
                             "--domain or --launch)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print each command sent, as JSON, before its reply")
    parser.add_argument("-p", "--pretty", action="store_true", help="indent JSON output")
    parser.add_argument("--no-pretty", dest="pretty", action="store_false",
                        help="compact JSON output, even if the config file says pretty")
    parser.add_argument("-l", "--logfile", metavar="PATH",
                        help="append every message sent and received as timestamped JSON lines")
    parser.add_argument("-N", "--skip-negotiation", action="store_true",
                        help="no greeting or capabilities negotiation (e.g. for qemu-ga)")
    parser.add_argument("-H", "--hmp", action="store_true", help="HMP mode: lines are human monitor commands")
    parser.add_argument("-e", "--exit-on-error", action="store_true", help="stop at the first failed line")
    parser.add_argument("-x", "--echo", action="store_true",
                        help="in scripts, print each input line to stderr (as '+ LINE') before its output, as sh -x "
                             "does; requests then go one at a time")
    parser.add_argument("--no-schema", action="store_true",
                        help="send key=value arguments as typed: no checking or coercion against the QMP schema")
    parser.add_argument("--color", "--colour", choices=("auto", "always", "never"), metavar="WHEN",
                        help="colour output: auto (a terminal and no NO_COLOR), always or never")
    parser.add_argument("--events", metavar="SPEC", type=_event_spec,
                        help="which events print inline: all, only:NAME[,NAME...] or hide:NAME[,NAME...] "
                             "(names may be globs such as BLOCK_JOB_*); /events changes it later")
    parser.add_argument("--timestamps", choices=("absolute", "relative", "off"),
                        help="how events show their time at a terminal (relative: since the last command)")
    parser.add_argument("--timeout", metavar="SECONDS", type=_seconds,
                        help="give up on a reply (and on the greeting) after SECONDS; scripts then exit 3 "
                             "(default: wait forever at a terminal, 300 s in scripts; 0 or inf: wait forever "
                             "for replies)")
    parser.add_argument("--wait-for-socket", metavar="SECONDS", type=_seconds,
                        help="retry the first connection for up to SECONDS while QEMU starts")
    parser.add_argument("--reconnect", action="store_true",
                        help="at a terminal, reconnect by itself (with backoff) when QEMU goes away")
    parser.add_argument("--history-size", metavar="N", type=_count,
                        help=f"keep the last N commands in the history file (default: {DEFAULT_HISTORY_SIZE}; "
                             "0: no history)")
    parser.add_argument("--editing-mode", choices=("emacs", "vi"),
                        help="key bindings for the input line (default: emacs)")
    parser.add_argument("--launch", action="store_true",
                        help="start QEMU for this session (QEMU arguments after --; none: the live block "
                             "operations document's setup) and stop it on exit")
    parser.add_argument("--workdir", metavar="DIR",
                        help="with --launch: run QEMU in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--domain", metavar="NAME",
                        help="instead of ADDRESS, the monitor of the running libvirt domain NAME (a name, UUID or "
                             "id, as virsh takes it; needs qmpsh[libvirt]); libvirt then marks the domain tainted "
                             "(custom-monitor)")
    parser.add_argument("-c", "--connect", metavar="URI",
                        help="with --domain: libvirt's URI, as virsh -c takes it (default: $LIBVIRT_DEFAULT_URI, "
                             "else libvirt's default)")
    parser.add_argument("--export", choices=("python",), metavar="FORMAT",
                        help="qmpsh --export python FILE: write the commands of FILE (a -l log, a script, or "
                             "a /save or --record file) to stdout as a standalone program on qemu.qmp that sends "
                             "them again, waiting for the events seen before each (a log) or its /wait and /job "
                             "lines (a script), and exits 1 at the first error; then exit. A script's key=value "
                             "line with arguments is refused (the schema would coerce it): JSON, ! lines and "
                             "/save files are exact")
    parser.add_argument("--replay", metavar="LOG",
                        help="send the commands of LOG (a -l log) again in order, as a script, waiting before each "
                             "for the events seen before it; a reply that differs from the recorded one (error or "
                             "return, other keys) is said on stderr and the exit status is 1")
    parser.add_argument("--record", metavar="FILE",
                        help="write each line that succeeds to FILE (a new file) as it runs, as /save does: a "
                             "script qmpsh can run again")
    parser.add_argument("--version", action="version", version=f"qmpsh {__version__}")
    parser.set_defaults(**DEFAULTS)
    return parser


def _export(path: str) -> None:
    """--export python FILE: a log, script or /save file as a program on stdout; :raise _Refused: it cannot be."""
    from qmpsh.export import export_file
    from qmpsh.transcript import TranscriptError

    try:
        program = export_file(path)
    except TranscriptError as err:
        raise _Refused(err) from None
    sys.stdout.write(program)


def _non_negative(convert: Callable[[str], float], what: str, most: int | None = None) -> Callable[[str], float]:
    """An argparse type: ``convert`` the text, refusing what is not ``what`` (NaN), below zero or over ``most``."""

    def parse(text: str) -> float:
        from argparse import ArgumentTypeError  # only when an option is given, and then argparse is loaded

        try:
            value = convert(text)
        except ValueError:
            raise ArgumentTypeError(f"not {what}: {text!r}") from None
        if value != value:  # NaN: every comparison with it is false
            raise ArgumentTypeError(f"not {what}: {text!r}")
        if value < 0:
            raise ArgumentTypeError("cannot be negative")
        if most is not None and value > most:
            raise ArgumentTypeError(f"too large: at most {most}")
        return value

    return parse


_seconds = _non_negative(float, "a number of seconds")
_count = _non_negative(int, "a whole number", most=sys.maxsize)  # a larger one is no index: islice refuses it


def _event_spec(spec: str) -> str:
    """--events SPEC, checked (the session parses it when it starts)."""
    from qmpsh.events import EventFilter

    try:
        EventFilter.parse(spec)
    except ValueError as err:
        import argparse

        raise argparse.ArgumentTypeError(str(err)) from None
    return spec


def _split_qemu_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


class Target(enum.Enum):
    """What qmpsh talks to."""

    SOCKET = "socket"  # ADDRESS or $QMP_SOCKET
    LAUNCH = "launch"  # a QEMU qmpsh starts for the run and stops at its end (--launch)
    DOMAIN = "domain"  # a running libvirt domain's monitor (--domain)
    EXPORT = "export"  # nothing: a -l log is written as a program (--export)


class Mode(NamedTuple):
    """How the run goes, decided once from the arguments and stdin."""

    target: Target
    address: str  # Target.SOCKET's server; empty for the others (--launch learns it when QEMU listens)
    interactive: bool  # stdin is a terminal: the prompt; otherwise a script


class _SessionEnd(NamedTuple):
    """How a session that connected ended: what its exit status is decided from."""

    interactive: bool
    lost: bool
    failed: bool
    stdout_error: OSError | None
    unrecorded: bool  # --record FILE could not be written whole


class _Refused(Exception):
    """qmpsh cannot run as asked (config file, logfile, libvirt-python, QEMU): said in one line, exit status 2."""


class _Unreachable(Exception):
    """The first connection failed; the session has said why."""


class _Ended(BaseException):
    """SIGHUP or SIGTERM; leaving goes on as it does for a signal in the event loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    """Run qmpsh and decide its exit status from how the run ended (here and in _session_status only).

    What the run opens (the logfile, a launched QEMU) is owned by one ExitStack and closed in the
    reverse order: QEMU is stopped and its work directory cleaned up before the log is closed.

    The interpreter's exit ends with garbage collections that look through every object the run
    made, to free what no one can reach any more: 9 ms of a 70 ms start-up. By then everything that
    writes (stdout, the logfile, --record, the history) has been flushed and closed, so the objects
    are frozen at exit (``gc.freeze``): those collections pass them by and the process's end frees them.
    """
    atexit.register(gc.freeze)
    closed = [name for name in ("stdin", "stdout", "stderr") if getattr(sys, name) is None]
    if closed:  # started with >&- or the like: the next file opened would take the stream's place
        if sys.stderr is not None:
            print(f"qmpsh: {closed[0]} is closed", file=sys.stderr)
        return ExitStatus.USAGE
    for stream in (sys.stdout, sys.stderr):
        # JSON strings may hold lone surrogates ("\ud800"): print them as that same JSON escape.
        stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]  # a TextIOWrapper here
    own, qemu_args = _split_qemu_args(list(sys.argv[1:] if argv is None else argv))
    log: Logfile | None = None
    with contextlib.ExitStack() as owned:
        try:
            args, mode = _arguments(own, qemu_args)
            if mode.target is Target.EXPORT:
                _export(args.address)
                return ExitStatus.OK
            log = _open_logfile(args.logfile, owned)
            launched = _launcher(mode, qemu_args, args.workdir, owned)
            status: int = _session_status(_serve(args, mode, log, launched))
        except _Refused as refused:
            print(f"qmpsh: {refused}", file=sys.stderr)
            status = ExitStatus.USAGE
        except _Unreachable:
            status = ExitStatus.CONNECTION
        except KeyboardInterrupt:
            status = ExitStatus.FAILED
        except _Ended as ended:
            status = 128 + ended.signum
    if log is not None and log.error is not None:
        return max(status, ExitStatus.USAGE)  # as tee does: the run went on, the log is not whole
    return status


def _session_status(end: _SessionEnd) -> ExitStatus:
    """At a terminal only a lost connection counts; a script's failed lines and stdout count too; a
    --record file not written whole counts as the -l log does (as tee does: at least 2)."""
    status = _run_status(end)
    return max(status, ExitStatus.USAGE) if end.unrecorded else status


def _run_status(end: _SessionEnd) -> ExitStatus:
    if end.interactive:
        return ExitStatus.CONNECTION if end.lost else ExitStatus.OK
    if end.stdout_error is not None:  # not QEMU's fault: not 3
        return ExitStatus.READER_GONE if isinstance(end.stdout_error, BrokenPipeError) else ExitStatus.USAGE
    if end.lost:
        return ExitStatus.CONNECTION
    return ExitStatus.FAILED if end.failed else ExitStatus.OK


def _arguments(own: list[str], qemu_args: list[str]) -> tuple[Arguments, Mode]:
    """The options (the config file's values under the command line's) and the mode they ask for.

    A usage error exits 2 through argparse; :raise _Refused: the config file cannot be used.
    """
    args = _plain_arguments(own) or _parsed_arguments(own)
    _script_files(args)
    target = _target(args, qemu_args)
    address = (args.address or os.environ.get("QMP_SOCKET") or "") if target is Target.SOCKET else ""
    return args, Mode(target, address, sys.stdin.isatty() and args.replay is None and not args.files)


def _plain_arguments(own: list[str]) -> SimpleNamespace | None:
    """``ADDRESS [FILE...]`` and no config file: the defaults and those words, read without argparse
    (importing it and building the parser are 2 ms of a 50 ms start-up). None for any other command line."""
    if any(word.startswith("-") and word != "-" for word in own) or config.exists():
        return None
    from types import SimpleNamespace

    return SimpleNamespace(**DEFAULTS, address=own[0] if own else None, files=own[1:])


def _parsed_arguments(own: list[str]) -> argparse.Namespace:
    """The command line read by the parser, over the config file's values; :raise _Refused: see _arguments."""
    parser = build_parser()
    args = parser.parse_args(own)  # --help and --version work whatever the config file says
    try:
        defaults = config.load(parser)
    except config.ConfigError as err:
        raise _Refused(err) from None
    if defaults:  # the file's values become defaults: options given on the command line win
        parser.set_defaults(**defaults)
        args = parser.parse_args(own)
    return args


def _usage_error(message: str) -> NoReturn:
    """Exit 2 with the usage line and ``message``, as argparse does for a bad option."""
    build_parser().error(message)


def _script_files(args: Arguments) -> None:
    """ADDRESS FILE...: the first word is a script file too (a #! script's own path, or -) when
    --domain, --launch or $QMP_SOCKET says where QEMU is. A FILE that cannot be read is a usage error."""
    elsewhere = args.domain is not None or args.launch or bool(os.environ.get("QMP_SOCKET"))
    first = args.address
    if first is not None and elsewhere and args.export is None and (first == "-" or os.path.isfile(first)):
        args.files.insert(0, first)
        args.address = None
    if args.files and args.replay is not None:
        _usage_error("--replay runs the commands of its LOG: give no script FILE")
    for path in args.files:
        if path != "-" and not os.access(path, os.R_OK):
            _usage_error(f"cannot read script {path}")


def _target(args: Arguments, qemu_args: list[str]) -> Target:
    """What the arguments ask qmpsh to talk to; a combination that makes no sense is a usage error.

    :raise _Refused: --domain without libvirt-python.
    """
    if args.export is not None:
        if not args.address or args.launch or args.domain is not None or args.record or args.replay:
            _usage_error("--export python FILE: give the -l log, script or /save file to export, and no "
                         "--launch, --domain, --record or --replay")
        return Target.EXPORT
    if qemu_args and not args.launch:
        _usage_error("QEMU arguments after -- need --launch")
    if args.launch and args.address:
        _usage_error("give either ADDRESS or --launch, not both")
    if args.domain is not None:
        if args.address or args.launch or args.skip_negotiation:
            _usage_error("--domain takes the place of ADDRESS, --launch and --skip-negotiation")
        if args.wait_for_socket:  # libvirt's connection has no socket to wait for: refused, not ignored
            _usage_error("--wait-for-socket is for a QMP socket (ADDRESS, --launch), not --domain")
        try:
            import qmpsh.domain  # noqa: F401 - the optional extra, libvirt-python
        except ImportError as err:
            raise _Refused(err) from None
        return Target.DOMAIN
    if args.connect is not None:
        _usage_error("-c/--connect needs --domain")
    if args.launch:
        return Target.LAUNCH
    if not (args.address or os.environ.get("QMP_SOCKET")):
        _usage_error("no QMP server: give ADDRESS, set QMP_SOCKET, or use --launch")
    return Target.SOCKET


def _open_logfile(path: str | None, owned: contextlib.ExitStack) -> Logfile | None:
    """The -l logfile, closed with ``owned``; :raise _Refused: it cannot be opened."""
    if not path:
        return None
    from qmpsh.logfile import Logfile

    try:
        log = Logfile(path)
    except OSError as err:
        raise _Refused(f"cannot open logfile {path}: {err.strerror}") from None
    owned.callback(log.close)
    return log


def _launcher(mode: Mode, qemu_args: list[str], workdir: str | None,
              owned: contextlib.ExitStack) -> LaunchedQemu | None:
    """For --launch, the QEMU to start, stopped (and its work directory cleaned up) with ``owned``."""
    if mode.target is not Target.LAUNCH:
        return None
    from qmpsh.launch import LaunchedQemu

    launched = LaunchedQemu(qemu_args, workdir)
    owned.callback(_stop_launched, launched)
    return launched


def _serve(args: Arguments, mode: Mode, log: Logfile | None, launched: LaunchedQemu | None) -> _SessionEnd:
    """Start the launched QEMU, if any, and run the session in an event loop.

    From here on SIGHUP and SIGTERM end the run as leaving does (:raise _Ended:).
    :raise _Refused: QEMU did not start.
    """
    ending = _ending_signals()
    for signum in ending:  # until the event loop runs: while QEMU starts, say
        signal.signal(signum, _raise_ended)
    address = mode.address
    if launched is not None:
        from qmpsh.launch import LaunchError

        try:
            address = launched.start()
        except (LaunchError, OSError) as err:
            raise _Refused(err) from None
    if _received:  # came while QEMU started, where its _Ended was swallowed (an at-fork callback of Popen's)
        raise _Ended(_received[0])
    return asyncio.run(_run_until_signal(args, mode, address, launched, log, ending))


#: The ending signals received before the event loop runs. The handler's _Ended can be raised where
#: Python only prints it (in the callbacks Popen runs around fork): kept here, it is not lost.
_received: list[int] = []


def _raise_ended(signum: int, frame: object) -> None:
    _received.append(signum)
    raise _Ended(signum)


def _ending_signals() -> tuple[signal.Signals, ...]:
    """SIGHUP and SIGTERM, which end qmpsh as leaving does; not one it was started with ignored (nohup)."""
    return tuple(signum for signum in (signal.SIGHUP, signal.SIGTERM)
                 if signal.getsignal(signum) is not signal.SIG_IGN)


def _stop_launched(launched: LaunchedQemu) -> None:
    """Stop the QEMU qmpsh launched and remove its work directory unless the user made files there.

    A signal meanwhile is ignored: the stop is bounded (quit, then SIGTERM, then SIGKILL), and one cut
    short would leave QEMU running with no one to stop it.
    """
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    launched.stop()
    kept = launched.clean_up()
    if kept:
        try:
            print(f"qmpsh: {kept}", file=sys.stderr)
        except OSError:
            pass  # the terminal is gone (hang-up): the directory is kept all the same


async def _run_until_signal(args: Arguments, mode: Mode, address: str, launched: LaunchedQemu | None,
                            log: Logfile | None, ending: tuple[signal.Signals, ...]) -> _SessionEnd:
    """Run the session; a hang-up or SIGTERM ends it as leaving does (a launched QEMU is stopped cleanly):
    :raise _Ended: with the signal."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    caught: list[int] = []

    def end(signum: int) -> None:
        caught.append(signum)
        main_task.cancel()

    for signum in ending:
        loop.add_signal_handler(signum, end, signum)
    try:
        return await _run(args, mode, address, launched, log)
    except (asyncio.CancelledError, OSError):
        if not caught:
            raise
        raise _Ended(caught[0]) from None  # an OSError here: the closed terminal refused the last words


def _transport(args: Arguments, mode: Mode, address: str, log: Logfile | None) -> Transport:
    """The connection the mode asks for, not yet open: a libvirt domain's monitor or a QMP socket."""
    if mode.target is Target.DOMAIN:
        from qmpsh.domain import DomainTransport

        return DomainTransport(args.domain, args.connect, tap=log)
    from qmpsh.client import SocketTransport, parse_address

    return SocketTransport(parse_address(address), tap=log, negotiate=not args.skip_negotiation)


async def _run(args: Arguments, mode: Mode, address: str, launched: LaunchedQemu | None,
               log: Logfile | None) -> _SessionEnd:
    """Connect and run the prompt or the script.

    :raise _Unreachable: the first connection failed (said on stderr).
    :raise _Refused: the launched QEMU died before it could be reached.
    """
    from qmpsh.events import EventFilter
    from qmpsh.render import Renderer, want_colour
    from qmpsh.session import Options, Session

    renderer = Renderer(pretty=args.pretty, colour=want_colour(args.color, sys.stdout),
                        interactive=mode.interactive, timestamps=args.timestamps)
    options = Options(verbose=args.verbose, hmp=args.hmp, exit_on_error=args.exit_on_error,
                      interactive=mode.interactive, use_schema=not args.no_schema,
                      event_filter=EventFilter.parse(args.events), reconnect=args.reconnect,
                      pipeline=not (mode.interactive or args.verbose or args.exit_on_error or args.echo),
                      echo=args.echo,
                      timeout=_reply_timeout(args.timeout, mode.interactive),
                      libvirt=mode.target is Target.DOMAIN, libvirt_uri=args.connect)
    if log is not None:
        log.warn = renderer.error
    steps = _replayed(args.replay)
    recorder = _recorder(args.record, mode.interactive, checked=not args.no_schema, warn=renderer.error)
    try:
        return await _session(Session(renderer, options, _transport(args, mode, address, log), launched=launched,
                                      tap=log, recorder=recorder), args, mode, steps)
    finally:
        if recorder is not None:
            recorder.close()


async def _session(session: Session, args: Arguments, mode: Mode, steps: list[Step]) -> _SessionEnd:
    """Connect ``session``, and run the prompt, the replay or the script."""
    from qmpsh.transport import ConnectFailure

    renderer, transport, launched, recorder = session.renderer, session.transport, session.launched, session.recorder
    try:
        await session.connect(wait=args.wait_for_socket)
    except ConnectFailure as err:
        ended = await launched.ended(within=2.0) if launched is not None else None
        if ended:  # as if it had died before opening its socket: its own words say why
            raise _Refused(f"QEMU {ended}") from None
        renderer.error(str(err) if mode.target is Target.DOMAIN else f"cannot connect to {transport.where}: {err}")
        raise _Unreachable from None
    if mode.target is Target.DOMAIN:
        from qmpsh.domain import TAINT_NOTE

        renderer.note(TAINT_NOTE)
    if recorder is not None:
        try:
            recorder.begin(transport)
        except OSError as err:
            raise _Refused(f"cannot record to {args.record}: {err.strerror}") from None
    try:
        if mode.interactive:
            from qmpsh.repl import run_interactive

            await run_interactive(session, transport.where,
                                  history_size=args.history_size, editing_mode=args.editing_mode)
        elif args.replay is not None:
            from qmpsh.replay import replay

            await replay(session, steps, args.replay)
        elif args.files:
            from qmpsh.script import run_files

            await run_files(session, args.files)
        else:
            from qmpsh.script import run_script

            await run_script(session)
        lost = session.lost  # before leaving: closing the connection is no loss
    finally:
        await _disconnect(session)
        renderer.flush()
    return _SessionEnd(mode.interactive, lost, session.failed, renderer.stdout_error,
                       recorder is not None and recorder.error is not None)


def _recorder(path: str | None, interactive: bool, checked: bool, warn: Callable[[str], None]) -> Recorder | None:
    """What /save and --record keep: at a terminal always, in a script only with --record FILE.

    :raise _Refused: FILE exists (said before connecting; it is made once connected).
    """
    if path is None and not interactive:
        return None
    if path is not None and os.path.lexists(path):
        raise _Refused(f"cannot record to {path}: File exists")
    from qmpsh.record import Recorder

    return Recorder(path, checked, warn)


def _replayed(path: str | None) -> list[Step]:
    """--replay's steps, read before connecting; :raise _Refused: the log cannot be read."""
    if path is None:
        return []
    from qmpsh.transcript import TranscriptError, read_file

    try:
        return read_file(path)
    except TranscriptError as err:
        raise _Refused(err) from None


def _reply_timeout(given: float | None, interactive: bool) -> float | None:
    """--timeout as the session takes it: None to wait forever (given as 0 or inf, or none at a terminal)."""
    seconds = given if given is not None else None if interactive else SCRIPT_TIMEOUT
    return seconds if seconds and seconds != float("inf") else None


async def _disconnect(session: Session) -> None:
    await session.transport.close()  # quit: the server hung up first
