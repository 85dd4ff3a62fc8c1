#!/usr/bin/env bats
# vunlock end to end: the owner rule, --force, the exit codes for unlocked
# and foreign locks, the error accounting and the handoff to the next waiter.

load lock_common

setup() { lock_setup; }
teardown() { lock_teardown; }

@test "unlocking an unlocked volume exits 3" {
    run --separate-stderr "$VUNLOCK" "$V"
    [ "$status" -eq 3 ]
    [ "$stderr" = "vunlock: $V: not locked" ]
}

@test "someone else's lock: exit 4 naming the holder; --force releases it" {
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    local holder=$SPAWNED
    wait_until 5 locked
    run --separate-stderr "$VUNLOCK" "$V"
    [ "$status" -eq 4 ]
    [[ $stderr == "vunlock: $V: locked by pid $holder ("*") since "*", not by this process or an ancestor of it"* ]]
    run --separate-stderr "$VUNLOCK" "$V" --force --status 75
    [ "$status" -eq 0 ]
    unlocked
}

@test "a script's own vunlock works; the release is accounted" {
    run --separate-stderr sh -c '"$VLOCK" "$1" && "$VUNLOCK" "$1" --status 1' _ "$V"
    [ "$status" -eq 0 ]
    [[ $stderr == *"update failed with status 1 (failures: 1 of 5)"* ]]
    run --separate-stderr sh -c '"$VLOCK" "$1" && "$VUNLOCK" "$1" --status 75' _ "$V"
    [ "$status" -eq 0 ]
    run "$VLOCK" --list "$V"
    [[ $output == *"failures 1 of 5"*"last status 75"* ]]
    run --separate-stderr sh -c '"$VLOCK" "$1" && "$VUNLOCK" "$1"' _ "$V"
    [ "$status" -eq 0 ]
    [[ $stderr == *"recovered after 1 failed update"* ]]
    run "$VLOCK" --list "$V"
    [[ $output == *"failures 0 of 5, attempts 0 of 25, last status 0, last success "* ]]
    [[ $output != *"last success never"* ]]
}

@test "after max_failures the volume is given up on, until a success" {
    write_host_config "max_failures = 2"
    sh -c '"$VLOCK" "$1" && "$VUNLOCK" "$1" --status 1' _ "$V" 2>/dev/null
    run --separate-stderr sh -c '"$VLOCK" "$1" && "$VUNLOCK" "$1" --status 2' _ "$V"
    [[ $stderr == *"gave up on the volume after 2 consecutive failed updates"* ]]
    run "$VLOCK" --list "$V"
    [[ $output == *"failures 2 of 2"*", gave up"* ]]
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    run "$VLOCK" --list "$V"
    [[ $output != *"gave up"* ]]
}

@test "vunlock from the command vlock runs releases the lock early" {
    run --separate-stderr "$VLOCK" "$V" -- sh -c '"$VUNLOCK" "$1" && "$VLOCK" "$1" --owner 1 && "$VUNLOCK" "$1" --force' _ "$V"
    [ "$status" -eq 0 ]
    [ -z "$stderr" ]
}

@test "unlocking hands the lock to the next FIFO waiter" {
    mkfifo "$T/go"
    spawn sh -c '"$VLOCK" "$1" || exit 9; read -r _ <"$2/go"; "$VUNLOCK" "$1"; exec sleep 60' _ "$V" "$T"
    wait_until 5 locked
    spawn "$VLOCK" "$V" --wait=20s -- touch "$T/ran"
    local waiter=$SPAWNED
    wait_until 5 has_waiters 1
    echo go >"$T/go"
    wait "$waiter"
    [ -e "$T/ran" ]
}

@test "usage: a status outside 0..255 exits 64; a missing VOLUME exits 64" {
    run --separate-stderr "$VUNLOCK" "$V" --status 300
    [ "$status" -eq 64 ]
    run --separate-stderr "$VUNLOCK"
    [ "$status" -eq 64 ]
    [[ $stderr == *"Try 'vunlock --help'."* ]]
}

@test "the script may release through a forking wrapper or from a subshell; a stranger may not" {
    command -v timeout >/dev/null || skip "timeout (coreutils) is not installed"
    # As with sudo: vlock names the script with --owner $$, the release runs
    # under a wrapper whose parent is the script.
    run --separate-stderr sh -c '"$VLOCK" "$1" --owner $$ || exit 9; timeout 10 "$VUNLOCK" "$1" --status 0' _ "$V"
    [ "$status" -eq 0 ]
    unlocked
    run --separate-stderr sh -c '"$VLOCK" "$1" || exit 9; ( "$VUNLOCK" "$1" ) && echo released' _ "$V"
    [ "$status" -eq 0 ]
    [ "$output" = released ]
    unlocked
    # A process in another tree is still refused.
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    wait_until 5 locked
    run --separate-stderr sh -c '( "$VUNLOCK" "$1" )' _ "$V"
    [ "$status" -eq 4 ]
    locked
}
