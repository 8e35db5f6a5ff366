# fish completion for qmpsh.
# Written by completions/generate.py from qmpsh's argument parser: do not edit.
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
            case --export --domain
                set given 1
                set skip 1
            case --launch '--export=*' '--domain=*'
                set given 1
            case -l --logfile --color --colour --events --timestamps --timeout --wait-for-socket --history-size --editing-mode --workdir --domain -c --connect --export --replay --record
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
        set path (string split -m 1 \t -- $path)[1]
        if string match -q -- '*/' $path
            printf '%s\t%s\n' $path directory
        else if test -S (string replace -r -- '^~(?=/)' $HOME $path)
            printf '%s\t%s\n' $path 'unix socket'
        end
    end
end

function __qmpsh_events --description 'the forms of --events'
    if string match -qr -- '^(--events=)?(only|hide):' (commandline -ct)
        return  # event names: free
    end
    printf '%s\t%s\n' 'all' 'print every event'
    printf '%s\t%s\n' 'only:' 'print only these events (NAME,NAME...)'
    printf '%s\t%s\n' 'hide:' 'print every event but these (NAME,NAME...)'
end

complete -c qmpsh -f
complete -c qmpsh -n 'string match -q address -- (__qmpsh_positional)' -a '(__qmpsh_sockets)'
complete -c qmpsh -n 'string match -q file -- (__qmpsh_positional)' -F
complete -c qmpsh -n '__qmpsh_after_dashdash' -F
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s h -l help -d 'show this help message and exit'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s v -l verbose -d 'print each command sent, as JSON, before its reply'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s p -l pretty -d 'indent JSON output'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l no-pretty -d 'compact JSON output, even if the config file says pretty'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s l -l logfile -r -F -d 'append every message sent and received as timestamped JSON lines'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s N -l skip-negotiation -d 'no greeting or capabilities negotiation'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s H -l hmp -d 'HMP mode: lines are human monitor commands'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s e -l exit-on-error -d 'stop at the first failed line'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s x -l echo -d 'in scripts, print each input line to stderr before its output, as sh -x does'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l no-schema -d 'send key=value arguments as typed: no checking or coercion against the QMP schema'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l color -l colour -x -a 'auto always never' -d 'colour output: auto, always or never'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l events -x -a '(__qmpsh_events)' -d 'which events print inline: all, only:NAME[,NAME...] or hide:NAME[,NAME...]'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l timestamps -x -a 'absolute relative off' -d 'how events show their time at a terminal'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l timeout -x -d 'give up on a reply after SECONDS'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l wait-for-socket -x -d 'retry the first connection for up to SECONDS while QEMU starts'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l reconnect -d 'at a terminal, reconnect by itself when QEMU goes away'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l history-size -x -d 'keep the last N commands in the history file'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l editing-mode -x -a 'emacs vi' -d 'key bindings for the input line'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l launch -d 'start QEMU for this session and stop it on exit'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l workdir -x -a '(__fish_complete_directories)' -d 'with --launch: run QEMU in DIR and keep it'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l domain -x -d 'instead of ADDRESS, the monitor of the running libvirt domain NAME'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -s c -l connect -x -d 'with --domain: libvirt\'s URI, as virsh -c takes it'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l export -x -a 'python' -d 'qmpsh --export python FILE: write the commands of FILE to stdout as a standalone program on qemu.qmp that sends them again, waiting for the events seen before each or its /wait and /job lines, and exits 1 at the first error'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l replay -r -F -d 'send the commands of LOG again in order, as a script, waiting before each for the events seen before it'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l record -r -F -d 'write each line that succeeds to FILE as it runs, as /save does: a script qmpsh can run again'
complete -c qmpsh -n 'not __qmpsh_after_dashdash' -l version -d 'show program\'s version number and exit'
