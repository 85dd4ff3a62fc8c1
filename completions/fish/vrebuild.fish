# fish completion for vrebuild(8). Kept in step with `vrebuild --help` by
# tests/cli/docs.bats.

function __vrebuild_volumes
    __fish_complete_directories (commandline -ct) 'path inside a volume'
    for uuid in /dev/disk/by-uuid/*
        test -e $uuid; and printf 'UUID=%s\tvolume by UUID\n' (basename $uuid)
    end
end

# The cache names in the volume configs of the directories named on the
# command line (each walked up to its volume root), else of /.
function __vrebuild_caches
    set -l roots
    for word in (commandline -opc)[2..-1]
        string match -q -- '-*' $word; and continue
        test -d $word; or continue
        set -l dir (realpath -- $word 2>/dev/null); or continue
        while true
            if test -f (string trim -r -c / -- $dir)/etc/volwatch/bootcaches.toml
                set -a roots $dir
                break
            end
            test "$dir" = /; and break
            set dir (dirname -- $dir)
        end
    end
    set -q roots[1]; or set roots /
    for dir in $roots
        sed -n 's/^[[:space:]]*name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
            (string trim -r -c / -- $dir)/etc/volwatch/bootcaches.toml 2>/dev/null
    end
end

# vrebuild takes the word after a bare --wait as its value: offer durations there.
function __vrebuild_after_bare_wait
    set -l previous (commandline -opc)[-1]
    test "$previous" = --wait
end

complete -c vrebuild -n 'not __vrebuild_after_bare_wait; and not string match -q -- "-*" (commandline -ct)' -f -a '(__vrebuild_volumes)'
complete -c vrebuild -n '__vrebuild_after_bare_wait; and not string match -q -- "-*" (commandline -ct)' -f -a '5s 30s 2m 10m forever' -d 'Duration for --wait'
complete -c vrebuild -s a -l all -d "Every volume: discovered mounts and the host config's volumes"
complete -c vrebuild -s f -l force -d 'Rebuild every cache and copy every helper file, stale or not'
complete -c vrebuild -l cache -x -a '(__vrebuild_caches)' -d 'Rebuild only the cache called NAME'
complete -c vrebuild -l helpers-only -d 'Skip the rebuild step; only bring helpers up to date'
complete -c vrebuild -s n -l dry-run -d 'Print what would run and what would be copied; change nothing'
complete -c vrebuild -l wait -f -a '5s 30s 2m 10m forever' -d 'Wait for the lock, at most DURATION (alone: no bound)'
complete -c vrebuild -l low-priority -d 'Run rebuilders niced with the idle I/O class (what vwatch uses)'
complete -c vrebuild -l json -d 'Report per cache and helper as JSON on stdout'
complete -c vrebuild -s c -l config -r -F -d 'Host config file'
complete -c vrebuild -l lock-dir -x -a '(__fish_complete_directories (commandline -ct))' -d 'Lock directory'
complete -c vrebuild -s h -l help -d 'Print help and exit'
complete -c vrebuild -s V -l version -d 'Print version and exit'
