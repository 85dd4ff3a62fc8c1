#!/usr/bin/env bats
# vwatch against real mounts: a loop-mounted ext4 image carrying a volume
# config appears, is watched and rebuilt; umount is refused (EBUSY) while the
# volume is locked and succeeds after; unmounting stops the watch. Each test
# runs with both backends; the last two, of fanotify's per-file-system marks,
# with fanotify only. Needs root, mkfs.ext4 and loop devices; skips with the
# reason otherwise.

bats_require_minimum_version 1.5.0

load common
load vwatch

setup() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (loop mounts)"
    command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 is not installed (apt-get install e2fsprogs)"
    [[ -e /dev/loop-control ]] || skip "no loop devices (/dev/loop-control is missing)"
    make_sandbox
    make_fake_vrebuild
    MNT=$SANDBOX/mnt
    mkdir -p "$MNT"
    truncate -s 16M "$SANDBOX/image"
    mkfs.ext4 -q -F "$SANDBOX/image"
    # A volume config and sources on the image, so it is a volume from the moment it is mounted.
    mount -o loop "$SANDBOX/image" "$MNT"
    mkdir -p "$MNT/src/modules" "$MNT/out" "$MNT/etc/volwatch"
    echo "module a" > "$MNT/src/modules/a.ko"
    cp "$VOL/etc/volwatch/bootcaches.toml" "$MNT/etc/volwatch/bootcaches.toml"
    umount "$MNT"
    # Discover mounts; the sandbox's own directory volume is not needed.
    sed -i 's/^discover = false/discover = true/; s|^volumes = .*|volumes = []|' "$HOST"
}

teardown() {
    stop_vwatch
    [[ -n ${holder:-} ]] && kill -9 "$holder" 2>/dev/null
    local m
    for m in "${MNT:-}" "${SANDBOX:-}/moved" "${SANDBOX:-}"/binds/*; do
        if [[ -n $m ]] && mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m"; fi
    done
    remove_sandbox
}

mount_volume() { mount -o loop "$SANDBOX/image" "$MNT"; }

appears_and_is_rebuilt() {
    VWATCH_BACKEND=$1 start_vwatch --settle 200ms --startup-delay 0
    mount_volume
    wait_for_log "$MNT: watching \((uuid|dev)-[^,]*, 1 cache, [0-9]+ $1 watch" 10
    wait_for "grep -q -- ' $MNT\$' '$SANDBOX/rebuilds.log'" 10
    wait_for_log "$MNT: clean" 10
    echo "module b" > "$MNT/src/modules/b.ko"
    wait_for "[[ \$(grep -c -- ' $MNT\$' '$SANDBOX/rebuilds.log') -eq 2 ]]" 10
    wait_for_log "$MNT: clean" 10 2
}

umount_refused_while_locked() {
    mount_volume
    VWATCH_BACKEND=$1 start_vwatch --settle 200ms --startup-delay 0
    wait_for_log "$MNT: watching \((uuid|dev)-" 10
    wait_for_log "$MNT: clean" 10
    # Consistent: vwatch holds nothing open, so umount would work; lock it first.
    "$VLOCK" "$MNT" -- bash -c "while [[ ! -e '$SANDBOX/release' ]]; do sleep 0.05; done" &
    holder=$!
    wait_for_log "$MNT: busy \(locked\); refusing unmount \([0-9]+ tries left\)" 10
    run umount "$MNT"
    [ "$status" -ne 0 ]
    [[ $output == *"busy"* ]]
    mountpoint -q "$MNT"
    touch "$SANDBOX/release"
    wait "$holder"
    holder=
    wait_for "grep -- '$MNT:' '$LOG' | tail -1 | grep -q 'consistent; unmount allowed'" 10
    umount "$MNT"
    run ! mountpoint -q "$MNT"
    wait_for_log "$MNT: stopped watching \(unmounted or moved\)" 10
    kill -0 "$VWATCH_PID"
}

lazy_unmount_cancels_the_pending_check() {
    mount_volume
    VWATCH_BACKEND=$1 start_vwatch --settle 1s --startup-delay 0
    wait_for_log "$MNT: clean" 10
    local launched=$(grep -c -- " $MNT\$" "$SANDBOX/rebuilds.log")
    echo "module c" > "$MNT/src/modules/c.ko"
    wait_for_log "$MNT: source changed" 10
    umount -l "$MNT"
    wait_for_log "$MNT: stopped watching" 10
    # A negative check: let the settle time pass, then nothing may have
    # been started against the detached volume.
    sleep 1.5
    [ "$(grep -c -- " $MNT\$" "$SANDBOX/rebuilds.log")" -eq "$launched" ]
    kill -0 "$VWATCH_PID"
}

# With fanotify both volumes share one group: the image's mark must go
# without taking the mark of the file system beneath it ($VOL's, the
# sandbox's directory volume), which its old mount point resolves to now.
gone_volume_leaves_the_parent_watched() {
    local how=$1 vol_rebuilds
    sed -i "s|^volumes = .*|volumes = [\"$VOL\"]|" "$HOST"
    mount_volume
    VWATCH_BACKEND=fanotify start_vwatch --settle 200ms --startup-delay 0
    wait_for_log "$VOL: watching \(path-[^,]*, 1 cache, 1 fanotify watch\)" 10
    wait_for_log "$MNT: watching \((uuid|dev)-[^,]*, 1 cache, 1 fanotify watch\)" 10
    wait_for_log "$VOL: clean" 15
    wait_for_log "$MNT: clean" 15
    if [[ $how == move ]]; then
        mkdir -p "$SANDBOX/moved"
        mount --move "$MNT" "$SANDBOX/moved"
        wait_for_log "$SANDBOX/moved: watching \((uuid|dev)-" 10
    else
        umount "$MNT"
    fi
    wait_for_log "$MNT: stopped watching \(unmounted or moved\)" 10
    vol_rebuilds=$(grep -c -- " $VOL\$" "$SANDBOX/rebuilds.log")
    echo "module z" > "$VOL/src/modules/kernel/z.ko"
    wait_for "[[ \$(grep -c -- ' $VOL\$' '$SANDBOX/rebuilds.log') -gt $vol_rebuilds ]]" 15
    wait_for_log "$VOL: clean" 15 2
    if [[ $how == move ]]; then
        echo "module m" > "$SANDBOX/moved/src/modules/m.ko"
        wait_for "grep -q -- ' $SANDBOX/moved\$' '$SANDBOX/rebuilds.log'" 15
        wait_for "grep -- '$SANDBOX/moved:' '$LOG' | tail -1 | grep -q 'consistent; unmount allowed'" 15
        umount "$SANDBOX/moved"
    fi
    kill -0 "$VWATCH_PID"
}

@test "inotify: a loop-mounted volume appears, is watched and rebuilt" {
    appears_and_is_rebuilt inotify
}

@test "fanotify: a loop-mounted volume appears, is watched and rebuilt" {
    appears_and_is_rebuilt fanotify
}

@test "inotify: umount is refused (EBUSY) while the volume is locked, succeeds after, and stops the watch" {
    [[ -x $VLOCK ]] || skip "vlock was not built"
    umount_refused_while_locked inotify
}

@test "fanotify: umount is refused (EBUSY) while the volume is locked, succeeds after, and stops the watch" {
    [[ -x $VLOCK ]] || skip "vlock was not built"
    umount_refused_while_locked fanotify
}

@test "inotify: a lazy unmount during the settle time cancels the check; nothing starts against it" {
    lazy_unmount_cancels_the_pending_check inotify
}

@test "fanotify: a lazy unmount during the settle time cancels the check; nothing starts against it" {
    lazy_unmount_cancels_the_pending_check fanotify
}

@test "a mount storm of 200 bind mounts costs little and changes nothing" {
    mount_volume
    start_vwatch --settle 200ms --startup-delay 0
    wait_for_log "$MNT: clean" 10
    mkdir -p "$SANDBOX/binds"
    local i
    for ((i = 0; i < 200; i++)); do mkdir -p "$SANDBOX/binds/$i"; mount --bind "$MNT/src" "$SANDBOX/binds/$i"; done
    for ((i = 0; i < 200; i++)); do umount "$SANDBOX/binds/$i"; done
    kill -0 "$VWATCH_PID"
    local ticks=$(awk '{ print $14 + $15 }' "/proc/$VWATCH_PID/stat")
    echo "# vwatch CPU after the storm: $ticks ticks" >&3
    (( ticks < $(getconf CLK_TCK) ))
    [ "$(log_count "$MNT: stopped watching")" -eq 0 ]
}

# The storm's events are read in rests (mount_event_batch in vwatch.cpp):
# the volume's mount, queued among the binds, must still lead to a re-read.
@test "a volume mounted in the middle of a mount storm is still picked up" {
    start_vwatch --settle 200ms --startup-delay 0
    mkdir -p "$SANDBOX/binds" "$SANDBOX/bound"
    local i
    for ((i = 0; i < 300; i++)); do
        mkdir -p "$SANDBOX/binds/$i"
        mount --bind "$SANDBOX/bound" "$SANDBOX/binds/$i"
        if ((i == 150)); then mount_volume; fi
    done
    for ((i = 0; i < 300; i++)); do umount "$SANDBOX/binds/$i"; done
    wait_for_log "$MNT: watching \((uuid|dev)-[^,]*, 1 cache" 15
    wait_for "grep -q -- ' $MNT\$' '$SANDBOX/rebuilds.log'" 15
    wait_for_log "$MNT: clean" 15
    kill -0 "$VWATCH_PID"
}

@test "a volume moved to another mount point is followed there (the seed's vol_changed)" {
    mount_volume
    start_vwatch --settle 200ms --startup-delay 0
    wait_for_log "$MNT: clean" 10
    mkdir -p "$SANDBOX/moved"
    mount --move "$MNT" "$SANDBOX/moved"
    wait_for_log "$MNT: stopped watching \(unmounted or moved\)" 10
    wait_for_log "$SANDBOX/moved: watching \((uuid|dev)-" 10
    echo "module m" > "$SANDBOX/moved/src/modules/m.ko"
    wait_for "grep -q -- ' $SANDBOX/moved\$' '$SANDBOX/rebuilds.log'" 10
    # Busy until the rebuild is done and checked: only then may it go.
    wait_for "grep -- '$SANDBOX/moved:' '$LOG' | tail -1 | grep -q 'consistent; unmount allowed'" 10
    umount "$SANDBOX/moved"
}

@test "fanotify: unmounting a volume's file system keeps the volume on the file system beneath it watched" {
    gone_volume_leaves_the_parent_watched umount
}

@test "fanotify: moving a volume's file system keeps the volume on the file system beneath it watched" {
    gone_volume_leaves_the_parent_watched move
}
