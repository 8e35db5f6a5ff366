"""Write qmpsh's bash, zsh and fish completion scripts from its argument parser.

    python completions/generate.py      # rewrites completions/qmpsh.bash, _qmpsh, qmpsh.fish

The scripts are committed (packagers install them as they are); a test checks
that they match what this script writes, so they cannot drift from
``build_parser()``. What an option's value completes to comes from the parser
(``choices``) or from VALUES below; an option that takes a value and is in
neither makes this script fail, so a new option gets a decision.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from qmpsh.cli import build_parser  # noqa: E402

# dest -> what its value completes to: a unix socket (HOST:PORT is left free), a file, a
# directory, the --events forms, or nothing (a number, or free text: the shell offers no candidates)
VALUES = {
    "address": "socket",
    "logfile": "file",
    "workdir": "directory",
    "events": "events",
    "timeout": "number",
    "wait_for_socket": "number",
    "history_size": "number",
    "domain": "text",
    "connect": "text",
    "replay": "file",
    "record": "file",
}
#: Options after which the first positional is a FILE too: a log or script to export, or a script
#: run on the QEMU that --launch starts or --domain names.
NO_ADDRESS = ("--export", "--launch", "--domain")
EVENT_FORMS = [("all", "print every event"), ("only:", "print only these events (NAME,NAME...)"),
               ("hide:", "print every event but these (NAME,NAME...)")]

HEADER = "Written by completions/generate.py from qmpsh's argument parser: do not edit."


class Option:
    def __init__(self, action: argparse.Action) -> None:
        self.action = action
        self.shorts = [o for o in action.option_strings if not o.startswith("--")]
        self.longs = [o for o in action.option_strings if o.startswith("--")]
        self.strings = list(action.option_strings)
        self.flag = action.nargs == 0
        self.choices = [str(c) for c in action.choices] if action.choices is not None else None
        self.kind = None if self.flag or self.choices else VALUES.get(action.dest)
        if not self.flag and not self.choices and self.kind is None:
            raise SystemExit(f"generate.py: say in VALUES what {'/'.join(self.strings)}'s value completes to")
        self.metavar = str(action.metavar or action.dest.replace("_", "-"))
        self.help = short_help(action.help or "")


def short_help(text: str) -> str:
    """An option's help without its remarks in parentheses, up to a semicolon: a one-line description."""
    text = re.sub(r"\s*\([^()]*\)", "", text)
    text = re.split(r";\s", text, maxsplit=1)[0]
    return " ".join(text.split())


def model() -> tuple[list[Option], argparse.Action]:
    parser = build_parser()
    options = [Option(a) for a in parser._actions if a.option_strings]
    positionals = [a for a in parser._actions if not a.option_strings]
    # ADDRESS, then script FILEs: the shells complete the first as an address (sockets, directories),
    # the words after it as files; with an option that takes ADDRESS's place (NO_ADDRESS) every word is a FILE
    assert [a.dest for a in positionals] == ["address", "files"] and VALUES["address"] == "socket", \
        "positionals: ADDRESS FILE..."
    return options, positionals[0]


# -- bash ----------------------------------------------------------------------------

def bash(options: list[Option]) -> str:
    with_value = [o for o in options if not o.flag]
    cases = []
    for o in with_value:
        pattern = "|".join(o.strings)
        if o.choices:
            body = f"COMPREPLY=($(compgen -W '{' '.join(o.choices)}' -- \"$cur\"))"
        elif o.kind == "file":
            body = "_filedir"
        elif o.kind == "directory":
            body = "_filedir -d"
        elif o.kind == "events":
            words = " ".join(form for form, _ in EVENT_FORMS)
            body = ("[[ $cur == @(only|hide):* ]] && return  # event names: free\n"
                    f"            COMPREPLY=($(compgen -W '{words}' -- \"$cur\"))\n"
                    "            [[ ${COMPREPLY-} == *: ]] && compopt -o nospace\n"
                    "            __ltrim_colon_completions \"$cur\"")
        else:
            body = f":  # {'a number' if o.kind == 'number' else 'free text'}"
        cases.append(f"        {pattern})\n            {body}\n            return\n            ;;")
    all_options = " ".join(s for o in options for s in o.strings)
    takes_value = "|".join(s for o in with_value for s in o.strings)
    return f"""\
# bash completion for qmpsh                                   -*- shell-script -*-
# {HEADER}
# Needs bash-completion. Install as ~/.local/share/bash-completion/completions/qmpsh
# (or /usr/share/bash-completion/completions/qmpsh for everyone).

# Unix sockets, and directories to look for them in, whose path starts with $cur.
# A HOST:PORT address matches no file, so it is left as typed.
_qmpsh_sockets()
{{
    local path keep=()
    _filedir
    for path in "${{COMPREPLY[@]}}"; do
        [[ -d $path || -S $path ]] && keep+=("$path")
    done
    COMPREPLY=("${{keep[@]}}")
}}

_qmpsh()
{{
    local cur prev words cword split
    _init_completion -s -n : || return

    local i addresses=0  # ADDRESS given (or an option that takes its place): the words now are FILEs
    for ((i = 1; i < cword; i++)); do
        # --opt=VALUE is one word here: readline splits it at "=", _init_completion -s joins it again
        [[ ${{words[i]}} == @({'|'.join(NO_ADDRESS)})?(=*) ]] && addresses=1
        case ${{words[i]}} in
            --)  # QEMU's arguments follow (with --launch)
                _filedir
                return
                ;;
            {takes_value})
                ((i++))
                ;;
            -*) ;;
            *) ((addresses++)) ;;
        esac
    done

    case $prev in
{chr(10).join(cases)}
    esac
    $split && return

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '{all_options}' -- "$cur"))
        return
    fi
    if ((addresses == 0)); then
        _qmpsh_sockets
    else
        _filedir  # script FILEs
    fi
}} &&
    complete -F _qmpsh qmpsh
"""


# -- zsh -----------------------------------------------------------------------------

def _zsh_quote(text: str) -> str:
    """Text for a single-quoted _arguments spec."""
    return text.replace("'", "'\\''")


def _zsh_describe(text: str) -> str:
    return _zsh_quote(text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]"))


def _zsh_message(text: str) -> str:
    return _zsh_quote(text.replace(":", "\\:"))


def zsh(options: list[Option], address: argparse.Action) -> str:
    specs = []
    for o in options:
        if o.action.dest in ("help", "version"):
            exclusions = "(- :)"
        else:
            exclusions = f"({' '.join(o.strings)})" if len(o.strings) > 1 else ""
        names = []
        for s in o.strings:
            if o.flag:
                names.append(s)
            else:
                names.append(s + ("=" if s.startswith("--") else "+"))
        if o.flag:
            action = ""
        elif o.choices:
            action = f"({' '.join(o.choices)})"
        else:
            action = {"file": "_files", "directory": "_files -/", "events": "_qmpsh_events", "number": " ",
                      "text": " "}[o.kind]
        described = f"[{_zsh_describe(o.help)}]"
        message = o.metavar.lower() if len(o.metavar) > 1 else "number"
        argument = "" if o.flag else f":{_zsh_message(message)}:{action}"
        if len(names) == 1:
            specs.append(f"'{exclusions}{names[0]}{described}{argument}'")
        else:
            specs.append(f"'{exclusions}'{{{','.join(names)}}}'{described}{argument}'")
    address_help = _zsh_message(short_help(address.help or "") or "QMP server")
    specs.append(f"':{address_help}:_qmpsh_address'")
    specs.append("'*:script file:_files'")
    lines = " \\\n        ".join(specs)
    forms = " ".join(f"'{_zsh_quote(form.replace(':', chr(92) + ':'))}:{_zsh_quote(text)}'"
                     for form, text in EVENT_FORMS if form.endswith(":"))
    plain = " ".join(f"'{_zsh_quote(form)}:{_zsh_quote(text)}'" for form, text in EVENT_FORMS
                     if not form.endswith(":"))
    return f"""\
#compdef qmpsh
# zsh completion for qmpsh.
# {HEADER}
# Install as _qmpsh in a directory of $fpath before compinit runs, e.g. in ~/.zshrc:
#   fpath=(~/.zfunc $fpath); autoload -Uz compinit; compinit
# (or as /usr/share/zsh/vendor-completions/_qmpsh for everyone).

# A unix socket, or a directory to look for one in; HOST:PORT matches no file and is left as typed.
(( $+functions[_qmpsh_address] )) ||
_qmpsh_address() {{
    if (( ${{words[(I)({'|'.join(NO_ADDRESS)})(|=*)]}} )); then  # they take ADDRESS's place: a FILE
        _files
        return
    fi
    _wanted files expl 'unix socket' _path_files -g '*(-=,-/)'
}}

(( $+functions[_qmpsh_events] )) ||
_qmpsh_events() {{
    if compset -P '(only|hide):'; then
        _message 'event names, comma-separated (globs such as BLOCK_JOB_* allowed)'
        return
    fi
    local -a plain=({plain}) forms=({forms})
    _describe -t event-filters 'event filter' plain -- forms -S ''
}}

_qmpsh() {{
    if (( ${{words[(i)--]}} < CURRENT )); then  # QEMU's arguments follow (with --launch)
        _files
        return
    fi
    _arguments -s -S \\
        {lines}
}}

_qmpsh "$@"
"""


# -- fish ----------------------------------------------------------------------------

def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(options: list[Option]) -> str:
    takes_value = " ".join(s for o in options if not o.flag for s in o.strings)
    valued = {s for o in options if not o.flag for s in o.strings}
    no_address_valued = " ".join(s for s in NO_ADDRESS if s in valued)
    no_address_flags = " ".join(s for s in NO_ADDRESS if s not in valued)
    no_address_joined = " ".join(f"'{s}=*'" for s in NO_ADDRESS if s in valued)
    lines = []
    for o in options:
        parts = ["complete -c qmpsh -n 'not __qmpsh_after_dashdash'"]
        parts += [f"-s {s[1:]}" for s in o.shorts] + [f"-l {s[2:]}" for s in o.longs]
        if o.choices:
            parts += ["-x", "-a", _fish_quote(" ".join(o.choices))]
        elif o.kind == "file":
            parts += ["-r", "-F"]
        elif o.kind == "directory":
            parts += ["-x", "-a", "'(__fish_complete_directories)'"]
        elif o.kind == "events":
            parts += ["-x", "-a", "'(__qmpsh_events)'"]
        elif o.kind in ("number", "text"):
            parts += ["-x"]
        parts += ["-d", _fish_quote(o.help)]
        lines.append(" ".join(parts))
    events = "\n".join(f"    printf '%s\\t%s\\n' {_fish_quote(form)} {_fish_quote(text)}" for form, text in EVENT_FORMS)
    return f"""\
# fish completion for qmpsh.
# {HEADER}
# Install as ~/.config/fish/completions/qmpsh.fish
# (or /usr/share/fish/vendor_completions.d/qmpsh.fish for everyone).

function __qmpsh_after_dashdash --description 'QEMU arguments follow: -- is on the line'
    contains -- -- (commandline -opc)
end

function __qmpsh_positional --description 'the word to complete: address, file (after ADDRESS), or none'
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l skip 0
    set -l given 0
    for token in $tokens
        if test $skip = 1
            set skip 0
            continue
        end
        switch $token
            case --
                return 1
            case {no_address_valued}
                set given 1
                set skip 1
            case {no_address_flags} {no_address_joined}
                set given 1
            case {takes_value}
                set skip 1
            case '-*'
            case '*'
                set given 1
        end
    end
    test $skip = 1; and return 1  # an option's value
    test $given = 1; and echo file; or echo address
end

function __qmpsh_sockets --description 'unix sockets, and directories to look for them in'
    # fish's own file completion (it knows ~ and quoting), kept to directories and sockets;
    # HOST:PORT matches no file and is left as typed.
    for path in (complete -C"__qmpsh_no_such_command "(commandline -ct))
        set path (string split -m 1 \\t -- $path)[1]
        if string match -q -- '*/' $path
            printf '%s\\t%s\\n' $path directory
        else if test -S (string replace -r -- '^~(?=/)' $HOME $path)
            printf '%s\\t%s\\n' $path 'unix socket'
        end
    end
end

function __qmpsh_events --description 'the forms of --events'
    if string match -qr -- '^(--events=)?(only|hide):' (commandline -ct)
        return  # event names: free
    end
{events}
end

complete -c qmpsh -f
complete -c qmpsh -n 'string match -q address -- (__qmpsh_positional)' -a '(__qmpsh_sockets)'
complete -c qmpsh -n 'string match -q file -- (__qmpsh_positional)' -F
complete -c qmpsh -n '__qmpsh_after_dashdash' -F
{chr(10).join(lines)}
"""


def render() -> dict[str, str]:
    options, address = model()
    return {"qmpsh.bash": bash(options), "_qmpsh": zsh(options, address), "qmpsh.fish": fish(options)}


def main() -> int:
    for name, text in render().items():
        (HERE / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
