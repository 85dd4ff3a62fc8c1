# fish completion for vunlock(1). Kept in step with `vunlock --help` by
# tests/cli/docs.bats.

function __vunlock_volumes
    __fish_complete_directories (commandline -ct) 'path inside a volume'
    for uuid in /dev/disk/by-uuid/*
        test -e $uuid; and printf 'UUID=%s\tvolume by UUID\n' (basename $uuid)
    end
end

complete -c vunlock -f -a '(__vunlock_volumes)'
complete -c vunlock -s s -l status -x -a '0 1 75' -d "The update's exit status: 0 success, 75 not a failure"
complete -c vunlock -s f -l force -d 'Release the lock whoever owns it'
complete -c vunlock -s c -l config -r -F -d 'Host config file'
complete -c vunlock -l lock-dir -x -a '(__fish_complete_directories (commandline -ct))' -d 'Lock directory'
complete -c vunlock -s h -l help -d 'Print help and exit'
complete -c vunlock -s V -l version -d 'Print version and exit'
