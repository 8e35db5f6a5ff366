# bash completion for qmpsh                                   -*- shell-script -*-
# Written by completions/generate.py from qmpsh's argument parser: do not edit.
# Needs bash-completion. Install as ~/.local/share/bash-completion/completions/qmpsh
# (or /usr/share/bash-completion/completions/qmpsh for everyone).

# Unix sockets, and directories to look for them in, whose path starts with $cur.
# A HOST:PORT address matches no file, so it is left as typed.
_qmpsh_sockets()
{
    local path keep=()
    _filedir
    for path in "${COMPREPLY[@]}"; do
        [[ -d $path || -S $path ]] && keep+=("$path")
    done
    COMPREPLY=("${keep[@]}")
}

_qmpsh()
{
    local cur prev words cword split
    _init_completion -s -n : || return

    local i addresses=0  # ADDRESS given (or an option that takes its place): the words now are FILEs
    for ((i = 1; i < cword; i++)); do
        # --opt=VALUE is one word here: readline splits it at "=", _init_completion -s joins it again
        [[ ${words[i]} == @(--export|--launch|--domain)?(=*) ]] && addresses=1
        case ${words[i]} in
            --)  # QEMU's arguments follow (with --launch)
                _filedir
                return
                ;;
            -l|--logfile|--color|--colour|--events|--timestamps|--timeout|--wait-for-socket|--history-size|--editing-mode|--workdir|--domain|-c|--connect|--export|--replay|--record)
                ((i++))
                ;;
            -*) ;;
            *) ((addresses++)) ;;
        esac
    done

    case $prev in
        -l|--logfile)
            _filedir
            return
            ;;
        --color|--colour)
            COMPREPLY=($(compgen -W 'auto always never' -- "$cur"))
            return
            ;;
        --events)
            [[ $cur == @(only|hide):* ]] && return  # event names: free
            COMPREPLY=($(compgen -W 'all only: hide:' -- "$cur"))
            [[ ${COMPREPLY-} == *: ]] && compopt -o nospace
            __ltrim_colon_completions "$cur"
            return
            ;;
        --timestamps)
            COMPREPLY=($(compgen -W 'absolute relative off' -- "$cur"))
            return
            ;;
        --timeout)
            :  # a number
            return
            ;;
        --wait-for-socket)
            :  # a number
            return
            ;;
        --history-size)
            :  # a number
            return
            ;;
        --editing-mode)
            COMPREPLY=($(compgen -W 'emacs vi' -- "$cur"))
            return
            ;;
        --workdir)
            _filedir -d
            return
            ;;
        --domain)
            :  # free text
            return
            ;;
        -c|--connect)
            :  # free text
            return
            ;;
        --export)
            COMPREPLY=($(compgen -W 'python' -- "$cur"))
            return
            ;;
        --replay)
            _filedir
            return
            ;;
        --record)
            _filedir
            return
            ;;
    esac
    $split && return

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '-h --help -v --verbose -p --pretty --no-pretty -l --logfile -N --skip-negotiation -H --hmp -e --exit-on-error -x --echo --no-schema --color --colour --events --timestamps --timeout --wait-for-socket --reconnect --history-size --editing-mode --launch --workdir --domain -c --connect --export --replay --record --version' -- "$cur"))
        return
    fi
    if ((addresses == 0)); then
        _qmpsh_sockets
    else
        _filedir  # script FILEs
    fi
} &&
    complete -F _qmpsh qmpsh
