# fish completion for vlock(1). Kept in step with `vlock --help` by
# tests/cli/docs.bats.

function __vlock_volumes
    __fish_complete_directories (commandline -ct) 'path inside a volume'
    for uuid in /dev/disk/by-uuid/*
        test -e $uuid; and printf 'UUID=%s\tvolume by UUID\n' (basename $uuid)
    end
end

function __vlock_after_separator
    contains -- -- (commandline -opc)
end

complete -c vlock -n 'not __vlock_after_separator' -f -a '(__vlock_volumes)'
complete -c vlock -n __vlock_after_separator -x -a '(__fish_complete_subcommand --fcs-skip=1)'
complete -c vlock -l wait -f -a '5s 30s 2m 10m forever' -d 'Wait for the lock, at most DURATION (alone: no bound)'
complete -c vlock -l owner -x -a '(__fish_complete_pids)' -d "The process that holds the lock (default: the caller's parent)"
complete -c vlock -l purpose -x -d 'Why the lock is taken, shown to others'
complete -c vlock -s E -l conflict-exit-code -x -d 'Exit with N instead of 75 when busy or the wait times out'
complete -c vlock -s l -l list -d 'List every lock: owners and liveness, waiters in order, counters'
complete -c vlock -l json -d 'Print the outcome (or the --list) as JSON on stdout'
complete -c vlock -s c -l config -r -F -d 'Host config file'
complete -c vlock -l lock-dir -x -a '(__fish_complete_directories (commandline -ct))' -d 'Lock directory'
complete -c vlock -s h -l help -d 'Print help and exit'
complete -c vlock -s V -l version -d 'Print version and exit'
