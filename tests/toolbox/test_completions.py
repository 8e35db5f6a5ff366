"""The completion scripts in the real shells: bash (with bash-completion), zsh and fish.

Each shell loads the committed script and is asked for candidates the way it
asks itself: bash calls the completion function with COMP_WORDS split as
readline splits them, zsh runs its completion system in a pty with
``compadd`` wrapped to record what is offered, fish answers
``complete -C``. Then a real TAB in each interactive shell checks what lands
on the command line (no space after ``only:`` or a directory). The shells
are Debian's packages (``bash .ci/setup test`` installs them); a missing one
fails, it does not skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from qmpsh.cli import build_parser
from tests.conftest import REPO

COMPLETIONS = REPO / "completions"
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
OPTIONS = {option for action in build_parser()._actions for option in action.option_strings}

# (command line, the candidates: last path component, value after "--opt=", no trailing "/")
CASES = [
    ("qmpsh --col", {"--color", "--colour"}),
    ("qmpsh --color ", {"auto", "always", "never"}),
    ("qmpsh --color=al", {"always"}),
    ("qmpsh --colour n", {"never"}),
    ("qmpsh --timestamps ", {"absolute", "relative", "off"}),
    ("qmpsh --editing-mode ", {"emacs", "vi"}),
    ("qmpsh --events ", {"all", "only:", "hide:"}),
    ("qmpsh --events o", {"only:"}),
    ("qmpsh --events=h", {"hide:"}),
    ("qmpsh --events only:", set()),  # event names are free text
    ("qmpsh ", {"qmp.sock", "vms"}),  # sockets and directories; never plain files
    ("qmpsh vms/", {"inner.sock"}),
    ("qmpsh localhost:44", set()),  # HOST:PORT is left as typed
    ("qmpsh -v --events all -p ", {"qmp.sock", "vms"}),
    ("qmpsh --timeout ", set()),
    ("qmpsh --history-size ", set()),
    ("qmpsh -l ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh --workdir ", {"vms"}),
    ("qmpsh --launch -- ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh -", OPTIONS),
    # script FILEs after ADDRESS, any file; and in ADDRESS's place after an option that takes it
    ("qmpsh qmp.sock ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh -l notes.txt qmp.sock notes.txt ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh qmp.sock --color ", {"auto", "always", "never"}),
    ("qmpsh --export python ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh --domain vm1 ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh --domain=vm1 ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh --export=python ", {"notes.txt", "qmp.sock", "vms"}),
    ("qmpsh --logfile=notes.txt ", {"qmp.sock", "vms"}),  # an option's joined value is not ADDRESS
    ("qmpsh --launch ", {"notes.txt", "qmp.sock", "vms"}),
]


def require(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.fail(f"{shell} is missing: run 'bash .ci/setup test' (installs Debian's bash-completion zsh fish)")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory with a unix socket, a directory holding another one, and a plain file."""
    where = tmp_path_factory.mktemp("complete")
    (where / "vms").mkdir()
    (where / "notes.txt").write_text("not a socket\n")
    bound = []
    for path in (where / "qmp.sock", where / "vms" / "inner.sock"):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        bound.append(sock)
    yield where
    for sock in bound:
        sock.close()


def normal(line: str, hits: list[str]) -> set[str]:
    word = line.split(" ")[-1]
    prefix = word.split("=", 1)[0] + "=" if word.startswith("--") and "=" in word else ""
    out = set()
    for hit in hits:
        hit = hit.split("\t")[0]
        if prefix and hit.startswith(prefix):
            hit = hit[len(prefix):]
        if hit.rstrip("/") != hit or "/" in hit:
            hit = hit.rstrip("/").rsplit("/", 1)[-1]
        out.add(hit)
    return out


def check(shell: str, results: dict[str, list[str]]) -> None:
    wrong = {line: (sorted(normal(line, results[line])), sorted(want)) for line, want in CASES
             if normal(line, results[line]) != want}
    assert not wrong, f"{shell}: line -> (offered, wanted): {wrong}"


# -- bash ------------------------------------------------------------------------------

BASH_HARNESS = r"""
source {bash_completion}
source {script}
complete -p qmpsh >/dev/null || exit 9
compopt() {{ :; }}  # outside of readline's completion it would only complain
ask() {{
    COMP_LINE=$1 COMP_POINT=${{#1}}
    # readline's words: split at blanks, with "=" and ":" (in COMP_WORDBREAKS) words of their own
    local s=${{1//=/ = }}
    s=${{s//:/ : }}
    read -ra COMP_WORDS <<<"$s"
    [[ $1 == *' ' ]] && COMP_WORDS+=('')
    COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
    COMPREPLY=()
    _qmpsh qmpsh "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD - 1]}}"
    printf '%s\n' "== $1" "${{COMPREPLY[@]}}"
}}
"""


def bash_candidates(where: Path, lines: list[str]) -> dict[str, list[str]]:
    require("bash")
    if not BASH_COMPLETION.exists():
        pytest.fail(f"{BASH_COMPLETION} is missing: run 'bash .ci/setup test' (installs Debian's bash-completion)")
    script = BASH_HARNESS.format(bash_completion=BASH_COMPLETION, script=COMPLETIONS / "qmpsh.bash")
    script += "".join(f"ask {_sh_quote(line)}\n" for line in lines)
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=where, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return _sections(result.stdout)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sections(out: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for row in out.splitlines():
        if row.startswith("== "):
            current = found.setdefault(row[3:], [])
        elif row:
            current.append(row)
    return found


def test_bash(files):
    check("bash", bash_candidates(files, [line for line, _ in CASES]))


def test_bash_loads_from_the_user_completions_directory(files, tmp_path):
    """README's install: ~/.local/share/bash-completion/completions/qmpsh, loaded on demand."""
    target = tmp_path / "data" / "bash-completion" / "completions" / "qmpsh"
    target.parent.mkdir(parents=True)
    shutil.copy(COMPLETIONS / "qmpsh.bash", target)
    script = f"source {BASH_COMPLETION}\n__load_completion qmpsh && complete -p qmpsh"
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                            env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}, timeout=30)
    assert result.stdout.strip() == "complete -F _qmpsh qmpsh", result.stderr


# -- zsh -------------------------------------------------------------------------------

ZSH_SETUP = r"""
PS1='%% '
fpath=({completions} $fpath)
autoload -Uz compinit && compinit -u -D
unsetopt auto_list auto_menu list_beep beep
compadd() {{
    # record what the completion system offers, then offer it
    if [[ ${{@[1,(i)(-|--)]}} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
    local -a __hits
    builtin compadd -A __hits "$@"
    (( $#__hits )) && print -rl -- "${{__hits[@]}}" >> {capture}
    builtin compadd "$@"
}}
"""


def start(shell: str, args: list[str], cwd: Path) -> pexpect.spawn:
    require(shell)
    child = pexpect.spawn(shell, args, cwd=str(cwd), env={**os.environ, "TERM": "dumb"}, encoding="utf-8",
                          dimensions=(40, 200), timeout=10)
    child.delaybeforesend = None
    return child


def test_zsh(files, tmp_path):
    capture = tmp_path / "offered"
    setup = tmp_path / "setup.zsh"
    setup.write_text(ZSH_SETUP.format(completions=COMPLETIONS, capture=capture))
    child = start("zsh", ["-f", "-i"], files)
    try:
        child.sendline(f"source {setup}; print READY$((6*7))")
        child.expect("READY42")
        results = {}
        for line, wanted in CASES:
            capture.unlink(missing_ok=True)
            child.send(line + "\t")
            if wanted:  # no keys while zsh completes: with typeahead it may cut the completion short
                deadline = time.monotonic() + 10
                while not capture.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            child.send("\x15")  # kill the line
            child.sendline('print DO""NE')  # the echo differs from the output
            child.expect("\nDONE")
            results[line] = capture.read_text().splitlines() if capture.exists() else []
    finally:
        child.close(force=True)
    check("zsh", results)


# -- fish ------------------------------------------------------------------------------

def fish_candidates(where: Path, lines: list[str], env: dict[str, str] | None = None,
                    source: bool = True) -> dict[str, list[str]]:
    require("fish")
    script = f"source {COMPLETIONS / 'qmpsh.fish'}\n" if source else ""
    script += "".join(f"echo '== {line}'; complete -C'{line}'\n" for line in lines)
    result = subprocess.run(["fish", "-c", script], cwd=where, capture_output=True, text=True, timeout=30,
                            env=env or {**os.environ})
    assert result.returncode == 0 and not result.stderr, result.stderr
    return _sections(result.stdout)


def test_fish(files):
    check("fish", fish_candidates(files, [line for line, _ in CASES]))


def test_fish_loads_from_the_user_completions_directory(files, tmp_path):
    """README's install: ~/.config/fish/completions/qmpsh.fish, loaded on demand."""
    target = tmp_path / "config" / "fish" / "completions" / "qmpsh.fish"
    target.parent.mkdir(parents=True)
    shutil.copy(COMPLETIONS / "qmpsh.fish", target)
    qmpsh = Path(sys.executable).parent / "qmpsh"  # fish loads completions for commands it can find
    assert qmpsh.exists()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PATH": f"{qmpsh.parent}{os.pathsep}{os.environ['PATH']}"}
    found = fish_candidates(files, ["qmpsh --col"], env=env, source=False)
    assert normal("qmpsh --col", found["qmpsh --col"]) == {"--color", "--colour"}


# -- a real TAB ------------------------------------------------------------------------

TABS = [
    # (typed before TAB, the arguments qmpsh would get after "END" is typed after it)
    ("qmpsh --events o", "<--events><only:END>"),  # no space after only:
    ("qmpsh --color al", "<--color><always><END>"),
    ("qmpsh vm", "<vms/END>"),  # a directory: no space, go on typing
    ("qmpsh vms/", "<vms/inner.sock><END>"),
    ("qmpsh qm", "<qmp.sock><END>"),
    ("qmpsh --domain=vm1 no", "<--domain=vm1><notes.txt><END>"),  # a script FILE, not ADDRESS
]
SHELLS = {
    "bash": (["--norc", "--noprofile", "-i"],
             f"source {BASH_COMPLETION}; source {COMPLETIONS / 'qmpsh.bash'}; "
             "qmpsh() { printf '<%s>' \"$@\"; echo; }"),
    "zsh": (["-f", "-i"],
            f"fpath=({COMPLETIONS} $fpath); autoload -Uz compinit && compinit -u -D; "
            "qmpsh() { printf '<%s>' \"$@\"; echo; }"),
    "fish": (["--no-config", "-i"],
             f"source {COMPLETIONS / 'qmpsh.fish'}; function qmpsh; printf '<%s>' $argv; echo; end"),
}


@pytest.mark.parametrize("shell", SHELLS)
def test_tab_in_the_interactive_shell(files, shell):
    args, setup = SHELLS[shell]
    child = start(shell, args, files)
    try:
        child.sendline(f"{setup}; echo READY(math 6 \\* 7)" if shell == "fish" else f"{setup}; echo READY$((6*7))")
        child.expect("READY42")
        for typed, wanted in TABS:
            child.send(typed + "\t")
            time.sleep(0.2)  # the completion runs before the next keys are read, but a listing may follow
            child.send("END\r")
            child.expect(r"<[^\r\n]*END>")
            assert child.after == wanted, f"{shell}: {typed!r}<TAB>END ran qmpsh {child.after}"
    finally:
        child.close(force=True)


# -- generated from the parser -----------------------------------------------------------

def test_scripts_are_current():
    spec = importlib.util.spec_from_file_location("generate", COMPLETIONS / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, text in generate.render().items():
        assert (COMPLETIONS / name).read_text() == text, f"completions/{name} is stale: run completions/generate.py"
