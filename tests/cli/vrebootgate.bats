#!/usr/bin/env bats
# Scripted shutdown scenarios for the real vrebootgate on sandbox volumes.

load common

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
VREBOOTGATE=${VREBOOTGATE:-$VOLWATCH_BUILD_DIR/tools/vrebootgate}
VLOCK=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}
VUNLOCK=${VUNLOCK:-$VOLWATCH_BUILD_DIR/tools/vunlock}

setup() {
    make_sandbox
    export VOLWATCH_VREBUILD=$VREBUILD
    pids=()
}

teardown() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    pkill -f -- "--lock-dir $SANDBOX/" 2>/dev/null || true
    pkill -f -- "^sleep 120$" 2>/dev/null || true
    remove_sandbox
}

# shutdown_script: a stand-in for the shutdown process that will own the reboot lock.
shutdown_script() {
    sleep 300 &
    owner=$!
    pids+=("$owner")
}

add_rebuilder() {
    sed -i "/^\[rebuilders\]/a $1 = { argv = $2, timeout = \"${3:-1m}\" }" "$HOST"
    sed -i "s/^rebuild = .*/rebuild = \"$1\"/" "$VOL/etc/volwatch/bootcaches.toml"
}

# count_launches: the gate starts a wrapper that notes each launch in
# $SANDBOX/launches, then runs the real vrebuild.
count_launches() {
    printf '#!/bin/sh\necho "$$" >> "%s/launches"\nexec "%s" "$@"\n' "$SANDBOX" "$VREBUILD" > "$SANDBOX/vrebuild-counted"
    chmod +x "$SANDBOX/vrebuild-counted"
    : > "$SANDBOX/launches"
    export VOLWATCH_VREBUILD=$SANDBOX/vrebuild-counted
}

launches() { wc -l < "$SANDBOX/launches"; }

@test "all clean: granted at once, owned by the given process" {
    "$VREBUILD" "$VOL" 2>/dev/null
    shutdown_script
    run "$VREBOOTGATE" --owner "$owner"
    [ "$status" -eq 0 ]
    [[ "$output" == *"reboot lock granted to pid $owner"* ]]
    run "$VREBOOTGATE" --status
    [ "$status" -eq 0 ]
    [[ "$output" == *"reboot lock held by pid $owner"* ]]
}

@test "the default owner is the caller's parent, and the lock ends with it" {
    "$VREBUILD" "$VOL" 2>/dev/null
    run sh -c '"$1"; echo "gate=$?"; "$1" --status' sh "$VREBOOTGATE"
    [[ "$output" == *"gate=0"* ]]
    [[ "$output" == *"reboot lock held by pid"* ]]
    # That shell has exited: the reboot lock is free again.
    run "$VREBOOTGATE" --status
    [[ "$output" == *"reboot lock free"* ]]
}

@test "a locked volume: busy without --wait naming the holder; with --wait the gate waits for the unlock" {
    [ -x "$VLOCK" ] || skip "vlock is not built"
    "$VREBUILD" "$VOL" 2>/dev/null
    "$VLOCK" "$VOL" --purpose "kernel update" -- sleep 2 &
    pids+=($!)
    for _ in $(seq 50); do "$VCHECK" "$VOL" | grep -q "rebuild in progress" && break; sleep 0.1; done
    shutdown_script
    run "$VREBOOTGATE" --owner "$owner"
    [ "$status" -eq 75 ]
    [[ "$output" == *"$VOL: busy: kernel update running, pid"* ]]
    SECONDS=0
    run "$VREBOOTGATE" --owner "$owner" --wait=30s
    [ "$status" -eq 0 ]
    [[ "$output" == *"shutdown delay begins: waiting for $VOL"* ]]
    [[ "$output" == *"waiting for $VOL: kernel update running"* ]]
    [[ "$output" == *"shutdown delay ends after"* ]]
    [ "$SECONDS" -lt 20 ]
}

@test "a stale volume: --wait launches vrebuild, waits, and is granted with the cache fresh" {
    shutdown_script
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    run "$VREBOOTGATE" --owner "$owner" --wait=1m
    [ "$status" -eq 0 ]
    [[ "$output" == *"waiting for $VOL: pack: product missing"*"rebuilding, vrebuild pid"* ]]
    [[ "$output" == *"reboot lock granted"* ]]
    # The reboot lock refuses new volume locks, but vcheck only reads.
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
}

@test "a volume whose rebuild always fails stops blocking after max_failures" {
    add_rebuilder broken '["false"]'
    shutdown_script
    run "$VREBOOTGATE" --owner "$owner" --wait=1m
    [ "$status" -eq 0 ]
    [[ "$output" == *"gave up after 3 failures"*"not waiting for it"* ]]
    [[ "$output" == *"reboot lock granted"* ]]
    run "$VCHECK" "$VOL"
    [[ "$output" == *"gave-up"* ]]
}

@test "the --wait bound holds against a rebuilder that hangs; at the bound the gate stops the vrebuild it started" {
    add_rebuilder hang '["sh", "-c", "echo $$ > $0; exec sleep 120", "{root}/rebuilder.pid"]' 10m
    count_launches
    shutdown_script
    SECONDS=0
    "$VREBOOTGATE" --owner "$owner" --wait=2s >"$SANDBOX/gate.out" 2>&1 &
    gate=$!
    code=0
    wait "$gate" || code=$?
    [ "$SECONDS" -lt 40 ]
    [ "$code" -eq 75 ]
    output=$(cat "$SANDBOX/gate.out")
    echo "$output"
    [[ "$output" == *"$VOL: still blocking after"* ]]
    [[ "$output" == *"without the reboot lock; stopped 1 vrebuild (pid "* ]]
    # The vrebuild it launched and that vrebuild's rebuilder are gone, and
    # the volume lock was released without counting a failure.
    [ "$(launches)" -eq 1 ]
    vrebuild=$(head -n 1 "$SANDBOX/launches")
    rebuilder=$(cat "$VOL/rebuilder.pid")
    for _ in $(seq 100); do kill -0 "$rebuilder" 2>/dev/null || break; sleep 0.1; done
    for pid in "$vrebuild" "$rebuilder"; do
        if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still runs"; return 1; fi
    done
    run "$VCHECK" --json "$VOL"
    [[ "$output" == *'"lock": null'* ]]
    [[ "$output" == *'"failures": 0'* ]]
    run "$VREBOOTGATE" --status
    [[ "$output" == *"reboot lock free"* ]]
}

@test "a rebuilder that keeps answering 75 is relaunched with a back-off, and the gate still waits out its bound" {
    add_rebuilder later '["sh", "-c", "exit 75"]'
    count_launches
    shutdown_script
    SECONDS=0
    run timeout 120 "$VREBOOTGATE" --owner "$owner" --wait=6s
    echo "$output"
    echo "launches: $(launches)"
    [ "$status" -eq 75 ]
    [ "$SECONDS" -lt 60 ]
    # Without the back-off it launched 25 times in 2 s and then stopped
    # waiting; with it (1 s, 2 s, 4 s, ...) a 6 s bound sees about 3.
    [ "$(launches)" -ge 1 ]
    [ "$(launches)" -le 5 ]
    [[ "$output" == *"exited with status 75; $VOL is retried in 1 s at the earliest"* ]]
    [[ "$output" != *"gave up"* ]]
    [[ "$output" == *"$VOL: still blocking after"* ]]
    run "$VCHECK" --json "$VOL"
    [[ "$output" == *'"failures": 0'* ]]
}

@test "a second gate while the reboot lock is held answers 6 at once, even with a stale volume, and launches nothing" {
    "$VREBUILD" "$VOL" 2>/dev/null
    shutdown_script
    "$VREBOOTGATE" --owner "$owner"
    rm "$VOL/out/pack.tgz"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    count_launches
    SECONDS=0
    run timeout 120 "$VREBOOTGATE"
    [ "$status" -eq 6 ]
    [[ "$output" == *"reboot already in progress (held by pid $owner); proceed"* ]]
    [[ "$output" != *"busy"* ]]
    run timeout 120 "$VREBOOTGATE" --wait=60s --json
    [ "$status" -eq 6 ]
    [[ "$output" == *"reboot already in progress (held by pid $owner); proceed"* ]]
    [[ "$output" == *'"already": true'* ]]
    [[ "$output" != *"shutdown delay begins"* ]]
    # Well under the 60 s it would have waited for the stale volume.
    [ "$SECONDS" -lt 45 ]
    [ "$(launches)" -eq 0 ]
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
}

@test "while the reboot lock is held: vlock and vrebuild refuse, a second gate says proceed; after the owner dies vlock works" {
    "$VREBUILD" "$VOL" 2>/dev/null
    shutdown_script
    "$VREBOOTGATE" --owner "$owner"
    run "$VREBUILD" --force "$VOL"
    [ "$status" -eq 5 ]
    [[ "$output" == *"reboot in progress"* ]]
    if [ -x "$VLOCK" ]; then
        run "$VLOCK" "$VOL" -- true
        [ "$status" -eq 5 ]
        [[ "$output" == *"reboot in progress"* ]]
    fi
    run "$VREBOOTGATE" --wait=5s
    [ "$status" -eq 6 ]
    [[ "$output" == *"reboot already in progress"* ]]
    kill "$owner"
    wait "$owner" 2>/dev/null || true
    if [ -x "$VLOCK" ]; then
        run "$VLOCK" "$VOL" -- true
        [ "$status" -eq 0 ]
    fi
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
}

@test "--status and --json tell who holds it or what blocks" {
    run "$VREBOOTGATE" --status
    [ "$status" -eq 75 ]
    [[ "$output" == *"reboot lock free; blocked by:"* ]]
    [[ "$output" == *"$VOL: pack: product missing"* ]]
    run "$VREBOOTGATE" --status --json
    [ "$status" -eq 75 ]
    echo "$output" | "$PYTHON" -c '
import json, sys
doc = json.load(sys.stdin)
assert doc["held"] is False and doc["holder"] is None, doc
assert doc["blockers"][0]["reason"].startswith("pack: product missing"), doc
'
    shutdown_script
    run "$VREBOOTGATE" --owner "$owner" --wait=1m --json
    [ "$status" -eq 0 ]
    echo "$output" | "$PYTHON" -c '
import json, sys
text = sys.stdin.read()
doc = json.loads(text[text.index("{"):])
assert doc["granted"] is True and doc["owner"] > 0 and doc["exit_code"] == 0, doc
'
    run "$VREBOOTGATE" --status --json
    [ "$status" -eq 0 ]
    [[ "$output" == *'"held": true'* ]]
}

@test "--release drops the reboot lock for an aborted shutdown" {
    "$VREBUILD" "$VOL" 2>/dev/null
    shutdown_script
    "$VREBOOTGATE" --owner "$owner"
    # Root, or (as here when not root) the owner of the private lock directory.
    run "$VREBOOTGATE" --release
    [ "$status" -eq 0 ]
    [[ "$output" == *"released the reboot lock held by pid $owner"* ]]
    run "$VREBUILD" --force "$VOL"
    [ "$status" -eq 0 ]
    run "$VREBOOTGATE" --release
    [ "$status" -eq 3 ]
}

@test "--release by a user who is neither root nor the lock directory's owner is refused with 77" {
    [ "$(id -u)" -eq 0 ] || skip "needs root to run as another user"
    command -v setpriv >/dev/null || skip "setpriv is not installed"
    nobody=$(id -u nobody 2>/dev/null) || skip "no user nobody"
    "$VREBUILD" "$VOL" 2>/dev/null
    shutdown_script
    "$VREBOOTGATE" --owner "$owner"
    chmod 755 "$SANDBOX/locks"
    run setpriv --reuid "$nobody" --regid "$nobody" --clear-groups "$VREBOOTGATE" --release
    [ "$status" -eq 77 ]
    run "$VREBOOTGATE" --status
    [[ "$output" == *"reboot lock held by pid $owner"* ]]
}

@test "usage errors exit 64" {
    run "$VREBOOTGATE" --status --release
    [ "$status" -eq 64 ]
    run "$VREBOOTGATE" --wait=soon
    [ "$status" -eq 64 ]
    run "$VREBOOTGATE" --owner 0
    [ "$status" -eq 64 ]
}

@test "a locked volume that volwatch gave up on still blocks, within the bound, and never spins" {
    [ -x "$VLOCK" ] || skip "vlock is not built"
    id=$("$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])')
    mkdir -p "$SANDBOX/locks/volumes"
    printf 'volwatch-lock=1\nfailures=3\nattempts=3\n' > "$SANDBOX/locks/volumes/$id.lock"
    "$VLOCK" "$VOL" --purpose "manual fix" -- sleep 30 &
    pids+=($!)
    for _ in $(seq 50); do "$VCHECK" "$VOL" | grep -q "rebuild in progress" && break; sleep 0.1; done
    shutdown_script
    SECONDS=0
    run timeout 60 "$VREBOOTGATE" --owner "$owner"
    [ "$status" -eq 75 ]
    [[ "$output" == *"busy: manual fix running"* ]]
    run timeout 60 "$VREBOOTGATE" --owner "$owner" --wait=2s
    [ "$status" -eq 75 ]
    [ "$SECONDS" -lt 30 ]
    [[ "$output" == *"still blocking after"* ]]
}

@test "a lock on a volume the gate does not follow blocks too" {
    [ -x "$VLOCK" ] || skip "vlock is not built"
    "$VREBUILD" "$VOL" 2>/dev/null
    mkdir -p "$SANDBOX/other/etc/volwatch"
    cp "$VOL/etc/volwatch/bootcaches.toml" "$SANDBOX/other/etc/volwatch/"
    sed -i "s|^volumes = .*|volumes = [\"$VOL\", \"$SANDBOX/other\"]|" "$HOST"
    "$VLOCK" "$SANDBOX/other" --purpose "side job" -- sleep 3 &
    pids+=($!)
    for _ in $(seq 50); do "$VLOCK" --list | grep -q "side job" && break; sleep 0.1; done
    sed -i "s|^volumes = .*|volumes = [\"$VOL\"]|" "$HOST"
    shutdown_script
    run timeout 60 "$VREBOOTGATE" --owner "$owner" --wait=30s
    [ "$status" -eq 0 ]
    [[ "$output" == *"side job running"* ]]
}
