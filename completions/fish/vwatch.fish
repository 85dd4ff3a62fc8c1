# fish completion for vwatch(8). Kept in step with `vwatch --help` by
# tests/cli/docs.bats.

complete -c vwatch -f
complete -c vwatch -l settle -x -a '300ms 1s 5s 30s' -d 'Quiet time after the last change before checking'
complete -c vwatch -l startup-delay -x -a '0s 30s 300s' -d 'No automatic rebuilds this soon after start'
complete -c vwatch -l no-discover -d "Watch only the host config's volumes, not every eligible mount"
complete -c vwatch -l backend -x -a 'auto fanotify inotify' -d 'Watch backend'
complete -c vwatch -l log-level -x -a 'error warning notice info debug' -d 'Least important messages logged'
complete -c vwatch -l log -x -a 'auto stderr syslog journal' -d 'Where messages go'
complete -c vwatch -s c -l config -r -F -d 'Host config file'
complete -c vwatch -l lock-dir -x -a '(__fish_complete_directories (commandline -ct))' -d 'Lock directory'
complete -c vwatch -s h -l help -d 'Print help and exit'
complete -c vwatch -s V -l version -d 'Print version and exit'
