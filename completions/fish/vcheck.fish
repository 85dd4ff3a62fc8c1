# fish completion for vcheck(1). Kept in step with `vcheck --help` by
# tests/cli/docs.bats.

function __vcheck_volumes
    __fish_complete_directories (commandline -ct) 'path inside a volume'
    for uuid in /dev/disk/by-uuid/*
        test -e $uuid; and printf 'UUID=%s\tvolume by UUID\n' (basename $uuid)
    end
end

complete -c vcheck -f -a '(__vcheck_volumes)'
complete -c vcheck -s a -l all -d "Check every volume: discovered mounts and the host config's volumes"
complete -c vcheck -l deep -d 'Look at every file beneath every source, and hash helper copies'
complete -c vcheck -l format -x -a 'human json prometheus' -d 'Output format'
complete -c vcheck -l json -d 'Same as --format=json'
complete -c vcheck -l list-helpers -d "Print the host config's helper targets, check nothing"
complete -c vcheck -s q -l quiet -d 'Print nothing on stdout; only the exit status tells'
complete -c vcheck -s c -l config -r -F -d 'Host config file'
complete -c vcheck -l lock-dir -x -a '(__fish_complete_directories (commandline -ct))' -d 'Lock directory'
complete -c vcheck -s h -l help -d 'Print help and exit'
complete -c vcheck -s V -l version -d 'Print version and exit'
