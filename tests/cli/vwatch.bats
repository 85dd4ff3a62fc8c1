#!/usr/bin/env bats
# End-to-end tests of the real vwatch daemon on sandbox volumes, with a
# stand-in vrebuild (VOLWATCH_VREBUILD) that records every launch. Waits are
# bounded polls of the daemon's log; a fixed sleep only precedes a negative
# check (that nothing more happened), never a positive one.

bats_require_minimum_version 1.5.0

load common
load vwatch

setup() {
    make_sandbox
    make_fake_vrebuild
}

teardown() {
    stop_vwatch
    [[ -n ${holder:-} ]] && kill -9 "$holder" 2>/dev/null
    remove_sandbox
}

# still_exactly REBUILDS SETTLE_SECONDS: a check that nothing more starts. A
# second rebuild from a bug would start a settle time or so after the first
# one's "clean"; let several pass (a negative check cannot poll), then count.
still_exactly() {
    sleep "$(awk -v s="$2" 'BEGIN { print s * 5 + 1 }')"
    [ "$(rebuild_count)" -eq "$1" ]
}

# started: the sandbox volume had its first rebuild and is clean.
start_clean() {
    start_vwatch --settle 200ms --startup-delay 0 "$@"
    wait_until_clean 1
    [ "$(rebuild_count)" -eq 1 ]
}

@test "a stale volume is rebuilt at start, then a source change leads to exactly one rebuild after the settle time" {
    start_clean
    local before=$(date +%s%N)
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for_log "$VOL: clean" 15 2
    [ "$(rebuild_count)" -eq 2 ]
    still_exactly 2 0.2
    # The rebuild started no sooner than the settle time after the change.
    local started=$(awk '/^start/ { t = $2 } END { print t }' "$SANDBOX/rebuilds.log")
    started=${started/./}
    (( (${started:0:13} - before / 1000000) >= 190 ))
    grep -q "cache updated by vrebuild .* event=cache-updated" "$LOG"
    grep -q -- "--low-priority --config $HOST --lock-dir $SANDBOX/locks $VOL\$" "$SANDBOX/rebuilds.log"
}

@test "a burst of 1,000 changes leads to exactly one rebuild" {
    start_vwatch --settle 1s --startup-delay 0
    wait_until_clean 1
    local i
    for ((i = 0; i < 1000; i++)); do echo "$i" > "$VOL/src/modules/kernel/m$i.ko"; done
    wait_for_log "$VOL: clean" 20 2
    [ "$(rebuild_count)" -eq 2 ]
    still_exactly 2 1
}

@test "a change during a rebuild leads to one more rebuild after it" {
    start_clean
    echo 1.5 > "$SANDBOX/fake-sleep"
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    # Change a source after the second build read the sources, while it still runs.
    wait_for "[[ \$(grep -c '^built' '$SANDBOX/rebuilds.log') -eq 2 ]]"
    echo "module c" > "$VOL/src/modules/kernel/c.ko"
    rm "$SANDBOX/fake-sleep"
    wait_for "[[ \$(rebuild_count) -eq 3 ]]" 15
    wait_for_log "$VOL: clean" 15 2
    [ "$(rebuild_count)" -eq 3 ]
    still_exactly 3 0.2
    # The third started after the second ended: one at a time.
    awk '/^start/ { if (ended != "" && $2 < ended) exit 1 } /^end/ { ended = $2 }' "$SANDBOX/rebuilds.log"
}

@test "no automatic rebuild during the start-up delay, then one check of every volume" {
    start_vwatch --settle 200ms --startup-delay 2s
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for_log "start-up delay over; checking every volume" 15
    [ "$(rebuild_count)" -le 1 ]
    wait_until_clean 1
    [ "$(rebuild_count)" -eq 1 ]
    # Nothing was launched before the delay ended.
    local over started
    over=$(grep -n "start-up delay over" "$LOG" | head -1 | cut -d: -f1)
    started=$(grep -n "started .*fake-vrebuild" "$LOG" | head -1 | cut -d: -f1)
    (( started > over ))
}

@test "the volume config edited, broken and fixed: re-read, one clear line, resumed" {
    start_clean
    local config=$VOL/etc/volwatch/bootcaches.toml
    cp "$config" "$SANDBOX/good.toml"
    sed -i 's/depth   = "deep"/depth   = "shallow"/' "$config"
    wait_for_log "$VOL: re-read its config" 10
    echo 'version = 1
[[cache]]
name = "pack"
bogus_key = 1' > "$config"
    wait_for_log "$VOL: not watching: .*bootcaches.toml" 10
    [ "$(log_count "not watching")" -eq 1 ]
    # While broken, source changes are not acted on.
    echo "module x" > "$VOL/src/modules/kernel/x.ko"
    cp "$SANDBOX/good.toml" "$config"
    wait_for_log "$VOL: config is valid again; resumed watching" 10
    wait_for "[[ \$(rebuild_count) -eq 2 ]]" 10
    [ "$(log_count "not watching")" -eq 1 ]
}

@test "the volume directory deleted while its settle timer is pending: no crash, no rebuild" {
    start_vwatch --settle 1s --startup-delay 0
    wait_until_clean 1
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for_log "source changed \(src/modules/kernel/b.ko\)"
    rm -rf "$VOL"
    wait_for_log "$VOL: stopped watching" 10
    wait_for_log "$VOL: does not exist yet; watching for it" 10
    kill -0 "$VWATCH_PID"
    [ "$(rebuild_count)" -eq 1 ]
    run -1 grep "started .*fake-vrebuild" <(sed -n '/stopped watching/,$p' "$LOG")
}

@test "an explicit volume that appears later is picked up" {
    local vol2=$SANDBOX/later/vol2
    sed -i "s|^volumes = .*|volumes = [\"$VOL\", \"$vol2\"]|" "$HOST"
    start_clean
    grep -q "$vol2: does not exist yet; watching for it" "$LOG"
    mkdir -p "$vol2/etc/volwatch" "$vol2/src" "$vol2/out"
    echo data > "$vol2/src/file"
    cp "$VOL/etc/volwatch/bootcaches.toml" "$vol2/etc/volwatch/bootcaches.toml"
    wait_for_log "$vol2: watching \(path-" 10
    wait_for "grep -q -- ' $vol2\$' '$SANDBOX/rebuilds.log'" 10
}

@test "a change arriving after its volume was re-read drops the stale rebuild result (generation check)" {
    start_clean
    echo 1.5 > "$SANDBOX/fake-sleep"
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for "[[ \$(rebuild_count) -eq 2 ]]"
    # Re-read the volume (a new generation) while its rebuild runs.
    sed -i 's/depth   = "deep"/depth   = "shallow"/' "$VOL/etc/volwatch/bootcaches.toml"
    wait_for_log "$VOL: re-read its config" 10
    wait_for_log "dropped the result of vrebuild pid [0-9]+ for path-[0-9a-f]+: generation [0-9]+ is stale, now [0-9]+" 10
    kill -0 "$VWATCH_PID"
}

@test "a lock owner killed: the failure is recorded within a second, by vwatch alone" {
    [[ -x $VLOCK ]] || skip "vlock was not built"
    start_clean
    bash -c "'$VLOCK' '$VOL' && exec sleep 60" &
    holder=$!
    wait_for_log "$VOL: busy \(locked\); refusing unmount" 10
    local killed=$(date +%s%N)
    kill -9 "$holder"
    wait_for_log "exited without unlocking.*event=update-failed" 10
    local record
    record=$(grep -l '^failures=1$' "$SANDBOX"/locks/volumes/*.lock)
    # Timed from just before the kill to the record's mtime (vwatch rewrites
    # it in place when it records the death; a later write could only make
    # the figure larger), not to when this script's polling saw the log line:
    # that poll's own latency on a loaded machine is not vwatch's, and needed
    # a margin (1.5 s) the issue's "within a second" does not give.
    local recorded=$(stat -c %.9Y "$record")
    recorded=${recorded/./}
    echo "# owner's death recorded $(( (recorded - killed) / 1000000 )) ms after the kill" >&3
    (( (recorded - killed) / 1000000 < 1000 ))
    holder=
}

@test "a queue overflow is logged once and leads to a re-check that finds a change whose event was lost" {
    # A second volume whose one source change comes after the queue is full:
    # its event is dropped, so only the overflow's re-check can find it. The
    # flood itself changes nothing watched, so it cannot cause a rebuild.
    local vol2=$SANDBOX/vol2
    mkdir -p "$vol2/etc/volwatch" "$vol2/src" "$vol2/out"
    echo data > "$vol2/src/file"
    cp "$VOL/etc/volwatch/bootcaches.toml" "$vol2/etc/volwatch/bootcaches.toml"
    sed -i "s|^volumes = .*|volumes = [\"$VOL\", \"$vol2\"]|" "$HOST"
    start_vwatch --settle 200ms --startup-delay 0
    wait_for_log "$VOL: clean" 15
    wait_for_log "$vol2: clean" 15
    [ "$(rebuild_count)" -eq 2 ]
    kill -STOP "$VWATCH_PID"
    wait_for "[[ \$(awk '{ print \$3 }' /proc/$VWATCH_PID/stat) == T ]]" 10
    local max=$(cat /proc/sys/fs/inotify/max_queued_events) i
    # Entries beside the product in its watched directory: none is a watched
    # path. Each creation queues at least one event (IN_CREATE), and the
    # queue holds at most max.
    for ((i = 0; i < max + 100; i++)); do : > "$VOL/out/junk$i"; done
    echo "changed" > "$vol2/src/file"
    kill -CONT "$VWATCH_PID"
    wait_for_log "inotify event queue overflowed; re-checking every volume" 10
    wait_for_log "$vol2: source changed \(queue overflow\)" 10
    wait_for_log "$VOL: source changed \(queue overflow\)" 10
    wait_for "[[ \$(grep -c -- ' $vol2\$' '$SANDBOX/rebuilds.log') -eq 2 ]]" 15
    wait_for_log "$vol2: clean" 15 2
    # The sandbox volume was re-checked too, and found clean: not rebuilt.
    still_exactly 3 0.2
    [ "$(grep -c -- " $VOL\$" "$SANDBOX/rebuilds.log")" -eq 1 ]
    [ "$(log_count "overflowed")" -eq 1 ]
}

@test "defer_while: a held lock file defers the rebuild until it is released" {
    command -v flock >/dev/null || skip "flock (util-linux) is not installed"
    local lockfile=$SANDBOX/dpkg-lock-frontend
    : > "$lockfile"
    sed -i "/^volumes = /a defer_while = [\"$lockfile\"]" "$HOST"
    start_clean
    # -o: the lock stays with flock itself, not with the command it runs.
    flock -o "$lockfile" sleep 60 &
    holder=$!
    wait_for "grep -q 'FLOCK.*:$(stat -c %i "$lockfile") ' /proc/locks" 5
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for_log "$VOL: rebuild deferred: $lockfile is held by pid" 10
    [ "$(rebuild_count)" -eq 1 ]
    local children=$(pgrep -P "$holder")
    kill "$holder" $children
    holder=
    wait_for "[[ \$(rebuild_count) -eq 2 ]]" 10
}

@test "idle is idle: no wake-ups over 10 seconds without events" {
    # As root vwatch follows every mount of its namespace; mounts made by
    # tests running alongside would count. Give it a private one.
    if [[ $(id -u) -eq 0 ]] && unshare --mount --propagation private true 2>/dev/null; then
        VWATCH_WRAPPER="unshare --mount --propagation private" start_clean
    else
        start_clean
    fi
    sleep 0.5
    local before after
    before=$(awk '/ctxt_switches/ { n += $2 } END { print n }' "/proc/$VWATCH_PID/status")
    sleep 10
    after=$(awk '/ctxt_switches/ { n += $2 } END { print n }' "/proc/$VWATCH_PID/status")
    echo "# context switches over 10 s: $((after - before))" >&3
    (( after - before <= 3 ))
}

@test "SIGHUP re-reads the configs; SIGTERM exits 0 and leaves a running rebuild to finish" {
    start_clean
    kill -HUP "$VWATCH_PID"
    wait_for_log "SIGHUP: re-reading the configs and re-scanning mounts"
    wait_for_log "$VOL: watching \(path-" 10 2
    echo 2 > "$SANDBOX/fake-sleep"
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for "[[ \$(rebuild_count) -eq 2 ]]"
    kill -TERM "$VWATCH_PID"
    local rc=0
    wait "$VWATCH_PID" || rc=$?
    VWATCH_PID=
    [ "$rc" -eq 0 ]
    grep -q "exiting; 1 rebuild left running" "$LOG"
    wait_for "[[ \$(grep -c '^end' '$SANDBOX/rebuilds.log') -eq 2 ]]" 10
}

@test "NOTIFY_SOCKET gets READY=1 once the watches are in place, and STATUS lines" {
    command -v python3 >/dev/null || skip "python3 is not installed"
    local socket=$SANDBOX/notify.sock
    # Each message is recorded with whether the daemon's log already said the
    # volume was watched when it arrived (vwatch writes its log unbuffered).
    python3 - "$socket" "$SANDBOX/notify.out" "$SANDBOX/vwatch.log" "$VOL: watching" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        try:
            message = s.recv(4096).decode()
        except socket.timeout:
            break
        try:
            with open(sys.argv[3]) as log:
                watched = sys.argv[4] in log.read()
        except FileNotFoundError:
            watched = False
        out.write(message.replace("\n", "|") + (" [watched]" if watched else " [not watched]") + "\n")
PY
    holder=$!
    wait_for "[[ -S '$socket' ]]" 5
    NOTIFY_SOCKET=$socket start_clean
    wait_for "grep -q '^READY=1' '$SANDBOX/notify.out'" 5
    cat "$SANDBOX/notify.out"
    # READY came after the volume was watched.
    grep -q '^READY=1.* \[watched\]$' "$SANDBOX/notify.out"
    wait_for "grep -q '^STATUS=watching 1 volume: 0 stale, 0 locked, 0 rebuilding' '$SANDBOX/notify.out'" 5
}

@test "usage errors exit 64; an invalid host config exits 78 before watching anything" {
    run --separate-stderr "$VWATCH" --log-level loud
    [ "$status" -eq 64 ]
    [[ $stderr == *"Try 'vwatch --help'."* ]]
    run --separate-stderr "$VWATCH" --settle soon
    [ "$status" -eq 64 ]
    echo 'settle = 5' > "$SANDBOX/bad.toml"
    run --separate-stderr "$VWATCH" --config "$SANDBOX/bad.toml"
    [ "$status" -eq 78 ]
    [[ $stderr == "vwatch: $SANDBOX/bad.toml:1"* ]]
}

@test "with the real vrebuild: a source change is rebuilt and the volume ends clean" {
    [[ -n ${VREBUILD:-} && -x $VREBUILD ]] || skip "vrebuild was not built"
    # The default: the vrebuild beside vwatch's own executable.
    unset VOLWATCH_VREBUILD
    [[ $(dirname "$VREBUILD") -ef $(dirname "$VWATCH") ]] || export VOLWATCH_VREBUILD=$VREBUILD
    start_vwatch --settle 200ms --startup-delay 0
    wait_for_log "started $(dirname "$VREBUILD")/vrebuild \(pid" 20
    wait_for_log "cache updated by vrebuild" 20
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    wait_for_log "cache updated by vrebuild" 20 2
    wait_for "'$VCHECK' --quiet '$VOL'" 10
}

@test "with the real vrebuild: a failing rebuild is retried with back-off, then vwatch gives up and lets go" {
    [[ -n ${VREBUILD:-} && -x $VREBUILD ]] || skip "vrebuild was not built"
    export VOLWATCH_VREBUILD=$VREBUILD
    # A rebuilder that always fails; retries come after settle_max, doubling.
    sed -i 's/^pack = .*/pack = { argv = ["false"] }/' "$HOST"
    sed -i '/^max_failures/a settle = "100ms"\nsettle_max = "300ms"' "$HOST"
    start_vwatch --settle 100ms --startup-delay 0
    wait_for_log "update failed: vrebuild \(pid [0-9]+\) exited with status [0-9]+.*event=update-failed" 20
    wait_for_log "$VOL: busy \(stale\); refusing unmount" 5
    wait_for_log "$VOL: trying again in 600ms" 20
    wait_for_log "$VOL: gave up on volume: 3 consecutive failures.*event=gave-up" 30
    wait_for_log "$VOL: consistent; unmount allowed" 5
    [ "$(log_count "event=update-failed")" -eq 3 ]
    # Given up: a further change starts nothing.
    local launched=$(log_count "started .*vrebuild")
    echo "module z" > "$VOL/src/modules/kernel/z.ko"
    wait_for_log "source changed \(src/modules/kernel/z.ko\)"
    wait_for_log "$VOL: gave up on volume" 10 1
    sleep 0.5  # a negative check: past the settle time, nothing was started
    [ "$(log_count "started .*vrebuild")" -eq "$launched" ]
}

@test "a product deleted while someone else holds the lock is rebuilt after the unlock" {
    [[ -x $VLOCK ]] || skip "vlock was not built"
    start_clean
    "$VLOCK" "$VOL" -- bash -c "while [[ ! -e '$SANDBOX/release' ]]; do sleep 0.05; done" &
    holder=$!
    wait_for_log "$VOL: busy \(locked\); refusing unmount" 10
    rm "$VOL/out/pack.tgz"
    wait_for_log "product out/pack.tgz changed during a rebuild; ignored" 10
    [ "$(rebuild_count)" -eq 1 ]
    touch "$SANDBOX/release"
    wait "$holder"
    holder=
    wait_for "[[ \$(rebuild_count) -eq 2 ]]" 10
    wait_for "[[ -f '$VOL/out/pack.tgz' ]]" 5
}

@test "the inotify watch limit reached: one loud line, and the volume is re-checked periodically" {
    unshare --user --map-root-user true 2>/dev/null || skip "no user namespaces here"
    # The limit is per user namespace: lower it in one of vwatch's own.
    printf '#!/bin/sh\necho 25 > /proc/sys/user/max_inotify_watches || exit 1\nexec "$@"\n' > "$SANDBOX/limit-watches"
    chmod +x "$SANDBOX/limit-watches"
    local i
    for ((i = 0; i < 40; i++)); do mkdir -p "$VOL/src/many/d$i"; done
    sed -i '/^max_failures/a settle = "100ms"\nsettle_max = "500ms"' "$HOST"
    VWATCH_WRAPPER="unshare --user --map-root-user $SANDBOX/limit-watches" start_vwatch --startup-delay 0
    wait_for_log "error: $VOL: inotify watch limit reached \(fs.inotify.max_user_watches=[0-9]+, user.max_inotify_watches=25\) at .*: some paths are not watched; re-checking every 500ms instead" 10
    [ "$(log_count "watch limit reached")" -eq 1 ]
    wait_until_clean 1
    # A change where no watch reaches is found by the periodic re-check.
    sleep 0.2
    echo late > "$VOL/src/many/d39/new.ko"
    wait_for "[[ \$(rebuild_count) -eq 2 ]]" 10
}

@test "a lock owner that dies after its volume was re-read is still accounted for, and nothing spins" {
    [[ -x $VLOCK ]] || skip "vlock was not built"
    start_clean
    bash -c "'$VLOCK' '$VOL' && exec sleep 60" &
    holder=$!
    wait_for_log "$VOL: busy \(locked\); refusing unmount" 10
    sed -i 's/depth   = "deep"/depth   = "shallow"/' "$VOL/etc/volwatch/bootcaches.toml"
    wait_for_log "$VOL: re-read its config" 10
    kill -9 "$holder"
    holder=
    wait_for_log "exited without unlocking.*event=update-failed" 5
    sleep 0.3
    local before after
    before=$(awk '/ctxt_switches/ { n += $2 } END { print n }' "/proc/$VWATCH_PID/status")
    sleep 1
    after=$(awk '/ctxt_switches/ { n += $2 } END { print n }' "/proc/$VWATCH_PID/status")
    (( after - before < 20 ))
}
