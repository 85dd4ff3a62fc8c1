#!/usr/bin/env bats
# vlock end to end: script patterns, commands under the lock, busy answers,
# owner liveness (PID reuse, boot id), FIFO order, sleeping waiters, the
# reboot lock and the lock directory's hardening (DESIGN §4, issue 3).

load lock_common

setup() { lock_setup; }
teardown() { lock_teardown; }

@test "script pattern: vlock V && work && vunlock V --status \$?" {
    run --separate-stderr sh -c '"$VLOCK" "$1" && echo working && "$VUNLOCK" "$1" --status $?' _ "$V"
    [ "$status" -eq 0 ]
    [ "$output" = working ]
    run "$VLOCK" --list "$V"
    [[ $output == *"  free"* ]]
    [[ $output == *"last status 0"* ]]
}

@test "without a command the lock belongs to the calling script and outlives vlock" {
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    wait_until 5 locked
    run "$VLOCK" --list "$V"
    [[ $output == *"owner pid $SPAWNED alive"* ]]
    run --separate-stderr "$VLOCK" "$V"
    [ "$status" -eq 75 ]
}

@test "vlock V -- CMD exits with CMD's status and records it" {
    run "$VLOCK" "$V" -- sh -c 'exit 7'
    [ "$status" -eq 7 ]
    run "$VLOCK" --list "$V"
    [[ $output == *"failures 1 of 5"*"last status 7"* ]]
    run "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    [[ $output == *"recovered after 1 failed update"* ]]
    run "$VLOCK" --list "$V"
    [[ $output == *"failures 0 of 5"*"last status 0"* ]]
}

@test "the command runs under the lock, and its arguments are passed verbatim" {
    run --separate-stderr "$VLOCK" "$V" -- sh -c '"$VLOCK" "$1" -- true; echo "inner $?"; printf "[%s]" "$2"' _ "$V" '--wait -x'
    [ "$status" -eq 0 ]
    [ "$output" = $'inner 75\n[--wait -x]' ]
}

@test "a command that cannot be run exits 127 and leaves the lock free" {
    run -127 --separate-stderr "$VLOCK" "$V" -- /nonexistent/command
    [ "$status" -eq 127 ]
    [[ $stderr == *"/nonexistent/command: No such file or directory"* ]]
    run "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
}

@test "the command is found through PATH as execvp(3) finds it, though the search is done before the grant" {
    mkdir -p "$T/bin1" "$T/bin2"
    printf '#!/bin/sh\necho first\n' >"$T/bin1/probe"  # not executable: passed over
    printf '#!/bin/sh\necho second\n' >"$T/bin2/probe"
    printf 'echo no interpreter line\n' >"$T/bin2/plain"  # ENOEXEC: execvp runs it with sh
    chmod +x "$T/bin2/probe" "$T/bin2/plain"
    PATH="$T/bin1:$T/bin2:$PATH" run --separate-stderr "$VLOCK" "$V" -- probe
    [ "$status" -eq 0 ]
    [ "$output" = second ]
    PATH="$T/bin1:$T/bin2:$PATH" run --separate-stderr "$VLOCK" "$V" -- plain
    [ "$status" -eq 0 ]
    [ "$output" = "no interpreter line" ]
    run -126 --separate-stderr env PATH="$T/bin1" "$VLOCK" "$V" -- probe
    [[ $stderr == *"vlock: probe: Permission denied"* ]]
}

@test "the busy message names the holder, its command, since when, and how many wait" {
    spawn "$VLOCK" "$V" -- sleep 60
    wait_until 5 locked
    spawn "$VLOCK" "$V" --wait -- true
    wait_until 5 has_waiters 1
    run --separate-stderr "$VLOCK" "$V"
    [ "$status" -eq 75 ]
    [[ $stderr =~ ^vlock:\ $V:\ busy:\ held\ by\ pid\ [0-9]+\ \(sleep\ 60\)\ since\ [0-9]{2}:[0-9]{2}:[0-9]{2},\ 1\ waiting$ ]]
}

@test "--wait=1s times out with 75, and -E picks another code" {
    spawn "$VLOCK" "$V" -- sleep 60
    wait_until 5 locked
    local start=$SECONDS
    run --separate-stderr "$VLOCK" "$V" --wait=1s -- true
    [ "$status" -eq 75 ]
    [[ $stderr == *"busy: held by pid"* ]]
    ((SECONDS - start <= 4))
    run --separate-stderr "$VLOCK" -E 9 "$V" --wait=200ms
    [ "$status" -eq 9 ]
    # A timed-out waiter left the queue.
    [ "$(live_waiters)" -eq 0 ]
}

@test "--wait before VOLUME does not take VOLUME as its duration" {
    run --separate-stderr "$VLOCK" --wait "$V" -- true
    [ "$status" -eq 0 ]
}

@test "--owner PID: the lock is held while that process lives" {
    spawn_exec sleep 60
    local owner=$SPAWNED
    run --separate-stderr "$VLOCK" "$V" --owner "$owner" --purpose testing
    [ "$status" -eq 0 ]
    run "$VLOCK" --list "$V"
    [[ $output == *"locked by pid $owner (sleep 60) since "*"(testing)"* ]]
    kill "$owner"
    wait "$owner" 2>/dev/null || true
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    [[ $stderr == *"pid $owner (sleep 60) exited without unlocking; counted as a failed update (failures: 1 of 5)"* ]]
    run --separate-stderr "$VLOCK" "$V" --owner 999999999
    [ "$status" -eq 64 ]
}

@test "owner death frees the lock and the next waiter proceeds" {
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    local holder=$SPAWNED
    wait_until 5 locked
    spawn sh -c '"$VLOCK" "$1" --wait=20s -- touch "$2/ran" 2>"$2/waiter.err"' _ "$V" "$T"
    local waiter=$SPAWNED
    wait_until 5 has_waiters 1
    [ ! -e "$T/ran" ]
    kill -KILL "$holder"
    wait "$waiter"
    [ -e "$T/ran" ]
    grep -q "exited without unlocking" "$T/waiter.err"
}

@test "killing vlock leaves the lock held while its command runs, and free after" {
    spawn "$VLOCK" "$V" -- sh -c 'sleep 1.5; touch "$1/done"' _ "$T"
    local vlock=$SPAWNED
    wait_until 5 locked
    kill -KILL "$vlock"
    run --separate-stderr "$VLOCK" "$V"
    [ "$status" -eq 75 ]
    [[ $stderr == *"(sh -c sleep 1.5;"* ]]
    run --separate-stderr "$VLOCK" "$V" --wait=10s -- true
    [ "$status" -eq 0 ]
    [ -e "$T/done" ]
}

@test "signals to vlock are forwarded to the command" {
    spawn "$VLOCK" "$V" -- sh -c 'trap "exit 42" TERM; touch "$1/started"; while :; do sleep 0.05; done' _ "$T"
    local vlock=$SPAWNED
    wait_until 5 test -e "$T/started"
    kill -TERM "$vlock"
    local code=0
    wait "$vlock" || code=$?
    [ "$code" -eq 42 ]
    run "$VLOCK" --list "$V"
    [[ $output == *"  free"*"last status 42"* ]]
}

@test "a record whose owner PID now belongs to another process is treated as dead" {
    "$VLOCK" "$V" -- true
    spawn sleep 60
    local pid=$SPAWNED stat boot
    IFS=: read -r _ stat boot <<<"$(identity "$pid")"
    # The same PID, but it started at another time: a recycled PID.
    printf 'volwatch-lock=1\nvolume=%s\nowner=%s:%s:%s\ncommand=old job\nsince=1\n' \
        "$V" "$pid" "$((stat + 1))" "$boot" >"$(volume_lock_file)"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    [[ $stderr == *"pid $pid (old job) exited without unlocking"* ]]
}

@test "a record from an earlier boot is treated as dead" {
    "$VLOCK" "$V" -- true
    spawn sleep 60
    local pid=$SPAWNED stat
    IFS=: read -r _ stat _ <<<"$(identity "$pid")"
    printf 'volwatch-lock=1\nvolume=%s\nowner=%s:%s:00000000-0000-0000-0000-000000000000\ncommand=old boot\nsince=1\n' \
        "$V" "$pid" "$stat" >"$(volume_lock_file)"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    [[ $stderr == *"exited without unlocking"* ]]
    # The genuine identity does hold the lock: the crafting above is sound.
    printf 'volwatch-lock=1\nvolume=%s\nowner=%s\ncommand=live\nsince=1\n' "$V" "$(identity "$pid")" >"$(volume_lock_file)"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 75 ]
}

@test "lock files are never unlinked: a descriptor opened before stays on the record in use" {
    "$VLOCK" "$V" -- true
    local file
    file=$(volume_lock_file)
    # Hold the inode open (inode numbers alone are reused at once on ext4),
    # then lock, queue a waiter, unlock and lock again.
    local held
    exec {held}<"$file"
    spawn "$VLOCK" "$V" -- sleep 60
    local holder=$SPAWNED
    wait_until 5 locked
    spawn "$VLOCK" "$V" --wait=30s -- true
    local waiter=$SPAWNED
    wait_until 5 has_waiters 1
    pkill -TERM -P "$holder"
    wait "$waiter"
    sh -c '"$VLOCK" "$1" && "$VUNLOCK" "$1"' _ "$V"
    [ "$(stat -L -c %d:%i "/proc/$$/fd/$held")" = "$(stat -c %d:%i "$file")" ]
    [ "$(stat -L -c %h "/proc/$$/fd/$held")" = 1 ]
    grep -q '^last_status=0$' "/proc/$$/fd/$held"
    exec {held}<&-
    [ "$(stat -c %a "$file")" = 644 ]
    [ "$(stat -c %a "$LOCKS")" = 755 ]
}

@test "writers lock a private guard: guard/ is 0700 and its files 0600" {
    "$VLOCK" "$V" -- true
    [ "$(stat -c %a "$LOCKS/guard")" = 700 ]
    local id
    id=$(basename "$(volume_lock_file)" .lock)
    [ "$(stat -c %a "$LOCKS/guard/volume-$id")" = 600 ]
    [ "$(stat -c %a "$LOCKS/guard/reboot")" = 600 ]
    # A guard directory someone opened up is closed again; a writable one is refused.
    chmod 755 "$LOCKS/guard"
    "$VLOCK" "$V" -- true
    [ "$(stat -c %a "$LOCKS/guard")" = 700 ]
    chmod 770 "$LOCKS/guard"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"$LOCKS/guard: refusing the lock directory: writable by group or others"* ]]
}

@test "a flock that anyone holds on a record or on reboot.lock stalls no locker and no bound" {
    command -v flock >/dev/null || skip "flock (util-linux) is not installed"
    "$VLOCK" "$V" -- true
    local file
    file=$(volume_lock_file)
    # The records are world-readable, and flock(2) needs only a read-only
    # descriptor: any user could hold these. Writers must not care.
    spawn flock -x "$file" sleep 60
    spawn flock -x "$LOCKS/reboot.lock" sleep 60
    sleep 0.2
    local start=$SECONDS
    run "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    run "$VLOCK" "$V" --wait=1s -- true
    [ "$status" -eq 0 ]
    spawn "$VLOCK" "$V" -- sleep 60
    wait_until 5 locked
    run --separate-stderr "$VLOCK" "$V" --wait=1s -- true
    [ "$status" -eq 75 ]
    run "$VLOCK" --list "$V"
    [[ $output == *"locked by "* ]]
    ((SECONDS - start < 20))
}

@test "FIFO: waiters get the lock in the order they arrived" {
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    local holder=$SPAWNED i
    wait_until 5 locked
    for i in 1 2 3 4 5; do
        spawn "$VLOCK" "$V" --wait=30s -- sh -c 'echo "$1" >>"$2/order"' _ "$i" "$T"
        wait_until 5 has_waiters "$i"
    done
    run "$VLOCK" --list "$V"
    [[ $output == *"waiter 1 pid "*"waiter 5 pid "* ]]
    kill -KILL "$holder"
    wait_until 10 has_lines "$T/order" 5
    [ "$(tr -d '\n' <"$T/order")" = 12345 ]
}

@test "a waiter that dies leaves the queue and never blocks the ones behind it" {
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    local holder=$SPAWNED
    wait_until 5 locked
    spawn "$VLOCK" "$V" --wait=30s -- sh -c 'echo first >>"$1/order"' _ "$T"
    local first=$SPAWNED
    wait_until 5 has_waiters 1
    spawn "$VLOCK" "$V" --wait=30s -- sh -c 'echo second >>"$1/order"' _ "$T"
    local second=$SPAWNED
    wait_until 5 has_waiters 2
    kill -KILL "$first"
    wait "$first" 2>/dev/null || true
    # Until the next rewrite the dead waiter is still in the record, shown
    # without a place in line.
    run "$VLOCK" --list "$V"
    [[ $output == *"waiter - pid $first dead"*"waiter 1 pid $second alive"* ]]
    kill -KILL "$holder"
    wait "$second"
    [ "$(cat "$T/order")" = second ]
}

@test "a blocked waiter sleeps: no busy polling over 5 seconds" {
    spawn "$VLOCK" "$V" -- sleep 60
    wait_until 5 locked
    spawn "$VLOCK" "$V" --wait=30s -- true
    local waiter=$SPAWNED before after
    wait_until 5 has_waiters 1
    switches() { awk '/ctxt_switches/ { n += $2 } END { print n }' "/proc/$1/status"; }
    before=$(switches "$waiter")
    sleep 5
    after=$(switches "$waiter")
    echo "context switches of the waiter in 5 s: $((after - before))"
    # Each --list above wakes it once (inotify); a polling loop would show hundreds.
    ((after - before <= 10))
}

@test "while the reboot lock has a live owner, new volume locks are refused with 5" {
    "$VLOCK" "$V" -- true
    spawn sleep 60
    printf 'volwatch-lock=1\nowner=%s\ncommand=shutdown\nsince=1\n' "$(identity "$SPAWNED")" >"$LOCKS/reboot.lock"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 5 ]
    [ "$stderr" = "vlock: $V: reboot in progress" ]
    run "$VLOCK" --list
    [[ $output == *"reboot lock: held by pid $SPAWNED"* ]]
    kill "$SPAWNED"
    wait "$SPAWNED" 2>/dev/null || true
    run "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
}

@test "--list --json gives owners, waiters in order and counters" {
    spawn "$VLOCK" "$V" --purpose listing -- sleep 60
    wait_until 5 locked
    spawn "$VLOCK" "$V" --wait -- true
    local waiter=$SPAWNED
    wait_until 5 has_waiters 1
    run --separate-stderr "$VLOCK" --list --json
    [ "$status" -eq 0 ]
    [[ $output == *'"state": "locked"'* ]]
    [[ $output == *'"purpose": "listing"'* ]]
    [[ $output == *'"command": "sleep 60"'* ]]
    [[ $output =~ \"waiters\":\ \[[^]]*\"pid\":\ $waiter[^]]*\"position\":\ 1 ]]
    [[ $output == *'"max_failures": 5'* ]]
    [[ $output == *'"reboot": {'* ]]
}

@test "--list needs no lock directory and no privileges" {
    run --separate-stderr "$VLOCK" --list
    [ "$status" -eq 0 ]
    [ "$output" = "reboot lock: free" ]
    [ ! -e "$LOCKS" ]
}

@test "hardening: a group-writable lock directory is refused" {
    mkdir -m 775 "$LOCKS"
    chmod 775 "$LOCKS"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"refusing the lock directory: writable by group or others (mode 0775)"* ]]
}

@test "hardening: a symlinked lock directory is refused" {
    mkdir "$T/elsewhere"
    ln -s "$T/elsewhere" "$LOCKS"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"refusing a symlinked lock directory"* ]]
}

@test "hardening: a symlinked or hard-linked lock file is refused" {
    "$VLOCK" "$V" -- true
    local file
    file=$(volume_lock_file)
    rm "$file"
    ln -s "$T/target" "$file"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"refusing a symlinked lock file"* ]]
    [ ! -e "$T/target" ]
    rm "$file"
    touch "$T/target"
    ln "$T/target" "$file"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"refusing a lock file with 2 hard links"* ]]
}

@test "hardening: a lock directory owned by another user is refused" {
    [[ $(id -u) -eq 0 ]] || skip "needs root to give the directory away"
    mkdir -m 755 "$LOCKS"
    chown nobody "$LOCKS"
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"refusing the lock directory: owned by uid $(id -u nobody), not by root"* ]]
}

@test "permissions: an unprivileged caller is refused a root-owned lock directory, not its own" {
    [[ $(id -u) -eq 0 ]] || skip "needs root to run as another user"
    command -v setpriv >/dev/null || skip "setpriv is not installed"
    local as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    "${as_nobody[@]}" true 2>/dev/null || skip "cannot switch to nobody here"
    "$VLOCK" "$V" -- true
    run --separate-stderr "${as_nobody[@]}" "$VLOCK" "$V" -- true
    [ "$status" -eq 77 ]
    [[ $stderr == *"permission denied"* ]]
    # Reading needs no privilege.
    run --separate-stderr "${as_nobody[@]}" "$VLOCK" --list
    [ "$status" -eq 0 ]
    # A lock directory of one's own works (the unprivileged test setup).
    mkdir -m 755 "$T/mine"
    chown nobody "$T/mine"
    run --separate-stderr "${as_nobody[@]}" "$VLOCK" --lock-dir "$T/mine" "$V" -- true
    [ "$status" -eq 0 ]
    [ "$(stat -c %U "$T/mine/volumes")" = nobody ]
}

@test "usage errors exit 64" {
    run --separate-stderr "$VLOCK"
    [ "$status" -eq 64 ]
    run --separate-stderr "$VLOCK" "$V" --wait=soon
    [ "$status" -eq 64 ]
    run --separate-stderr "$VLOCK" "$V" --
    [ "$status" -eq 64 ]
    run --separate-stderr "$VLOCK" --list -- true
    [ "$status" -eq 64 ]
    run --separate-stderr "$VLOCK" "$T/not-a-volume-$$"
    [ "$status" -eq 66 ]
    # The command is forked before the volume is resolved: it must not run.
    run --separate-stderr "$VLOCK" "$T/not-a-volume-$$" -- touch "$T/ran"
    [ "$status" -eq 66 ]
    [ ! -e "$T/ran" ]
    run --separate-stderr "$VLOCK" --lock-dir "$T/no/such/dir" "$V" -- touch "$T/ran"
    [ "$status" -ne 0 ]
    [ ! -e "$T/ran" ]
    # 0 would make "busy" look like success.
    run --separate-stderr "$VLOCK" "$V" -E 0 -- true
    [ "$status" -eq 64 ]
    [[ $stderr == *"--conflict-exit-code"* ]]
    # One message naming the option, then the hint on a line of its own.
    run --separate-stderr "$VLOCK" "$V" --owner 0
    [ "$status" -eq 64 ]
    [ "$stderr" = "vlock: --owner: expected a process id"$'\n'"Try 'vlock --help'." ]
    run --separate-stderr "$VLOCK" "$V" --purpose
    [ "$status" -eq 64 ]
    [ "$stderr" = "vlock: --purpose: needs a value"$'\n'"Try 'vlock --help'." ]
}

@test "an owner that dies while its vlock waits takes it out of the queue at once" {
    spawn "$VLOCK" "$V" -- sleep 60
    wait_until 5 locked
    spawn sleep 60
    local owner=$SPAWNED
    "$VLOCK" "$V" --wait=60s --owner "$owner" 2>"$T/waiter.err" &
    local waiter=$!
    echo "$waiter" >>"$T/pids"
    wait_until 5 has_waiters 1
    kill "$owner"
    local status=0
    wait "$waiter" || status=$?
    [ "$status" -eq 75 ]
    grep -q "the owner (pid $owner) exited while waiting; left the queue" "$T/waiter.err"
    [ "$(live_waiters)" -eq 0 ]
    run "$VLOCK" --list --json "$V"
    [[ $output == *'"waiters": []'* ]]
}

@test "a closed standard output or error changes nothing: vlock prints through stdio and ignores a failed write" {
    # The command's status and the record are what count; the busy message
    # to a closed stderr is lost, not turned into a failure (exit 70).
    run sh -c '"$VLOCK" "$1" -- sh -c "exit 3" >&- 2>&-' _ "$V"
    [ "$status" -eq 3 ]
    spawn sh -c '"$VLOCK" "$1" || exit 9; exec sleep 60' _ "$V"
    wait_until 5 locked
    run sh -c '"$VLOCK" "$1" -- true 2>&-' _ "$V"
    [ "$status" -eq 75 ]
    run sh -c '"$VLOCK" --list "$1" >&-' _ "$V"
    [ "$status" -eq 0 ]
    run "$VLOCK" --list "$V"
    [[ $output == *"last status 3"* ]]
}
