"""Command line: arguments, the address, interactive or scripted mode, exit status."""

from __future__ import annotations

import argparse
import asyncio
import enum
import os
import sys

from qmpsh import __version__


class ExitStatus(enum.IntEnum):
    OK = 0  # every line succeeded; or quit
    FAILED = 1  # a line failed: QMP error reply, parse error, /wait timeout
    USAGE = 2  # bad command line, unusable logfile, QEMU not installed for --launch
    CONNECTION = 3  # could not connect, or the connection was lost


EPILOG = """\
input:
  command key=value ...       qmp-shell syntax; dotted keys nest, values may be JSON
  {"execute": ...}            raw QMP JSON, over several lines if needed
  transaction( ... )          qmp-shell's transaction form
  (QEMU) / -> / <- lines      pasted documentation works as it is
  /wait EVENT [k=v] [timeout=S], /help, /quit    built-ins

exit status:
  0  every line succeeded (or quit)
  1  a line failed (QMP error, parse error, /wait timeout)
  2  usage error
  3  connection failed or lost
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmpsh",
        description="An interactive shell for the QEMU Machine Protocol (QMP).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("address", nargs="?", metavar="ADDRESS",
                        help="QMP server: a unix socket path or HOST:PORT (default: $QMP_SOCKET)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each command sent, as JSON, before its reply")
    parser.add_argument("-p", "--pretty", action="store_true", help="indent JSON output")
    parser.add_argument("-l", "--logfile", metavar="PATH",
                        help="append every message sent and received as timestamped JSON lines")
    parser.add_argument("-N", "--skip-negotiation", action="store_true",
                        help="no greeting or capabilities negotiation (e.g. for qemu-ga)")
    parser.add_argument("-H", "--hmp", action="store_true", help="HMP mode: lines are human monitor commands")
    parser.add_argument("-e", "--exit-on-error", action="store_true", help="stop at the first failed line")
    parser.add_argument("--no-schema", action="store_true",
                        help="send key=value arguments as typed: no checking or coercion against the QMP schema")
    parser.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto",
                        help="colour output: auto (a terminal and no NO_COLOR), always or never")
    parser.add_argument("--events", metavar="SPEC", default="all", type=_event_filter,
                        help="which events print inline: all, only:NAME[,NAME...] or hide:NAME[,NAME...] "
                             "(names may be globs such as BLOCK_JOB_*); /events changes it later")
    parser.add_argument("--timestamps", choices=("absolute", "relative", "off"), default="absolute",
                        help="how events show their time at a terminal (relative: since the last command)")
    parser.add_argument("--timeout", metavar="SECONDS", type=_seconds,
                        help="give up on a reply (and on the greeting) after SECONDS; scripts then exit 3 "
                             "(default: wait forever at a terminal, 300 s in scripts)")
    parser.add_argument("--wait-for-socket", metavar="SECONDS", type=_seconds, default=0.0,
                        help="retry the first connection for up to SECONDS while QEMU starts")
    parser.add_argument("--reconnect", action="store_true",
                        help="at a terminal, reconnect by itself (with backoff) when QEMU goes away")
    parser.add_argument("--launch", action="store_true",
                        help="start QEMU for this session (QEMU arguments after --; none: the live block "
                             "operations document's setup) and stop it on exit")
    parser.add_argument("--workdir", metavar="DIR",
                        help="with --launch: run QEMU in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--version", action="version", version=f"qmpsh {__version__}")
    return parser


SCRIPT_TIMEOUT = 300.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds cannot be negative")
    return value


def _event_filter(spec: str) -> object:
    from qmpsh.events import EventFilter

    try:
        return EventFilter.parse(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _split_qemu_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    own, qemu_args = _split_qemu_args(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    if qemu_args and not args.launch:
        parser.error("QEMU arguments after -- need --launch")
    if args.launch and args.address:
        parser.error("give either ADDRESS or --launch, not both")
    address = args.address or os.environ.get("QMP_SOCKET")
    if not address and not args.launch:
        parser.error("no QMP server: give ADDRESS, set QMP_SOCKET, or use --launch")
    if args.logfile:
        from qmpsh.logfile import Logfile

        try:
            args.log = Logfile(args.logfile)
        except OSError as err:
            print(f"qmpsh: cannot open logfile {args.logfile}: {err.strerror}", file=sys.stderr)
            return ExitStatus.USAGE
    else:
        args.log = None

    launched = None
    if args.launch:
        from qmpsh.launch import LaunchedQemu, LaunchError

        launched = LaunchedQemu(qemu_args, args.workdir)
        try:
            address = launched.start()
        except (LaunchError, OSError) as err:
            print(f"qmpsh: {err}", file=sys.stderr)
            return ExitStatus.USAGE
    try:
        return asyncio.run(_run(args, address, launched))
    except KeyboardInterrupt:
        return ExitStatus.FAILED
    finally:
        if launched is not None:
            launched.stop()
        if args.log is not None:
            args.log.close()


async def _run(args: argparse.Namespace, address: str, launched: object) -> int:
    from qmpsh.client import ConnectFailure, describe_address, parse_address
    from qmpsh.render import Renderer, want_colour
    from qmpsh.session import Options, Session

    interactive = sys.stdin.isatty()
    renderer = Renderer(pretty=args.pretty, colour=want_colour(args.color, sys.stdout), interactive=interactive,
                        timestamps=args.timestamps)
    options = Options(verbose=args.verbose, hmp=args.hmp, exit_on_error=args.exit_on_error, interactive=interactive,
                      use_schema=not args.no_schema, event_filter=args.events, reconnect=args.reconnect,
                      pipeline=not interactive and not args.verbose and not args.exit_on_error,
                      timeout=(args.timeout if args.timeout is not None else None if interactive else SCRIPT_TIMEOUT) or None)
    session = Session(renderer, options, tap=args.log)
    if args.skip_negotiation:
        session.client.await_greeting = False
        session.client.negotiate = False
    target = parse_address(address)
    try:
        await session.connect(target, wait=args.wait_for_socket)
    except ConnectFailure as err:
        renderer.error(f"cannot connect to {describe_address(target)}: {err}")
        return ExitStatus.CONNECTION
    try:
        if interactive:
            from qmpsh.repl import run_interactive

            await run_interactive(session, describe_address(target), launched)
            return ExitStatus.CONNECTION if session.lost else ExitStatus.OK
        from qmpsh.script import run_script

        await run_script(session)
    finally:
        await _disconnect(session)
        renderer.flush()
    if session.lost:
        return ExitStatus.CONNECTION
    return ExitStatus.FAILED if session.failed else ExitStatus.OK


async def _disconnect(session: object) -> None:
    await session.client.close_quietly()  # type: ignore[attr-defined]  # quit: the server hung up first
