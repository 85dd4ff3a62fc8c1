# fish completion for vrebootgate(8). Kept in step with `vrebootgate --help` by
# tests/cli/docs.bats.

# vrebootgate takes no operands.
complete -c vrebootgate -f
complete -c vrebootgate -n 'not __fish_seen_argument -l status -l release' -l wait -f -a '30s 2m 5m 10m forever' -d 'Rebuild stale volumes and wait for locked ones, at most DURATION (alone: no bound)'
complete -c vrebootgate -n 'not __fish_seen_argument -l status -l release' -l owner -x -a '(__fish_complete_pids)' -d "The process that holds the reboot lock (default: the caller's parent)"
complete -c vrebootgate -n 'not __fish_seen_argument -l release -l wait -l owner' -l status -d 'Report who holds the reboot lock, or what still blocks it; change nothing'
complete -c vrebootgate -n 'not __fish_seen_argument -l status -l wait -l owner' -l release -d 'Drop the reboot lock, for an aborted shutdown (root)'
complete -c vrebootgate -l json -d 'Print the outcome as JSON on stdout'
complete -c vrebootgate -s q -l quiet -d 'Print only warnings and errors'
complete -c vrebootgate -s c -l config -r -F -d 'Host config file'
complete -c vrebootgate -l lock-dir -x -a '(__fish_complete_directories (commandline -ct))' -d 'Lock directory'
complete -c vrebootgate -s h -l help -d 'Print help and exit'
complete -c vrebootgate -s V -l version -d 'Print version and exit'
