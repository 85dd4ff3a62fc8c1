#!/usr/bin/env bats
# Helper targets named by device (UUID=, LABEL=, /dev/...) on a real ext4
# loop device that stays unmounted outside a sync: vrebuild mounts it in a
# private mount namespace, vcheck reads it read-only, the whole-disk lock
# makes a busy device wait and then fail naming its holder, and kill -9 of
# vrebuild leaves nothing mounted. Needs root, mkfs.ext4 and loop devices;
# skips with the reason otherwise. (vfat is proven in the VM suite: this
# host's kernel has no vfat.)

bats_require_minimum_version 1.5.0

load common

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}

ESP_UUID=0b1c2d3e-4f50-4a6b-9c8d-7e6f5a4b3c2d

setup() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (loop devices and mounts)"
    command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 is not installed (apt-get install e2fsprogs)"
    [[ -e /dev/loop-control ]] || skip "no loop devices (/dev/loop-control is missing)"
    make_sandbox
    mkdir -p "$VOL/boot"
    echo kernel > "$VOL/boot/vmlinuz"
    make_product_fresh
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "out/pack.tgz"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    # A unique label per test run: another run's leftover image must not match.
    LABEL=vw$$${BATS_TEST_NUMBER}
    truncate -s 16M "$SANDBOX/image"
    mkfs.ext4 -q -F -L "$LABEL" -U "$ESP_UUID" "$SANDBOX/image"
    LOOP=$(losetup -f --show "$SANDBOX/image")
}

# release_holder: ends `flock -x DEV sleep N` and its sleep, which inherited the locked descriptor.
release_holder() {
    [[ -n ${holder:-} ]] || return 0
    local child
    child=$(cat "/proc/$holder/task/$holder/children" 2>/dev/null || true)
    kill -9 "$holder" $child 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    holder=
}

teardown() {
    release_holder
    [[ -n ${LOOP:-} ]] && losetup -d "$LOOP" 2>/dev/null
    remove_sandbox
}

# use_target SPEC [EXTRA-TOML]: the volume's one helper target.
use_target() {
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s"]\n%s\n' "$VOL" "$1" "${2:-}" >> "$HOST"
}

# not_mounted: the loop device is mounted in no mount namespace of any process.
not_mounted() {
    local dev
    dev=$(lsblk -no MAJ:MIN "$LOOP" | tr -d ' ')
    if grep -q " $dev " /proc/[0-9]*/mountinfo 2>/dev/null; then
        echo "$LOOP ($dev) is mounted: $(grep -l " $dev " /proc/[0-9]*/mountinfo 2>/dev/null | tr '\n' ' ')"
        return 1
    fi
}

# image_files: what is on the image, read through debugfs (no mount).
image_files() {
    debugfs -R "ls -p /volwatch/slot-a" "$SANDBOX/image" 2>/dev/null | cut -d/ -f6 | grep -v '^\.*$' | sort | tr '\n' ' '
}

@test "vrebuild syncs a helper named LABEL= and leaves it unmounted; vcheck reads it read-only" {
    use_target "LABEL=$LABEL"
    not_mounted
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper LABEL=$LABEL: helper updated: copied 2 files"* ]]
    not_mounted
    [[ $(image_files) == "MANIFEST.json boot out " ]]
    # The bootstamp is keyed by the spec, never by the temporary mount point.
    grep -q "\"target\": \"LABEL=$LABEL\"" "$VOL"/var/lib/volwatch/bootstamps/*.json
    before=$(sha256sum < "$SANDBOX/image")
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper LABEL=$LABEL  clean (generation 1)"* ]]
    [[ $(sha256sum < "$SANDBOX/image") == "$before" ]]
    not_mounted
}

@test "a helper named UUID= or by its /dev path is found without udev; a second sync keeps its generation" {
    use_target "UUID=${ESP_UUID^^}"
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper UUID=${ESP_UUID^^}: helper updated"* ]]
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 0 ]
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper UUID=${ESP_UUID^^}  clean (generation 1)"* ]]
    sed -i "s|UUID=${ESP_UUID^^}|$LOOP|" "$HOST"
    run "$VREBUILD" --force --helpers-only "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper $LOOP: helper updated"*"generation 2"* ]]
    not_mounted
}

@test "the mount lives only in vrebuild's private namespace while it writes" {
    use_target "LABEL=$LABEL"
    head -c 5M /dev/urandom > "$VOL/boot/vmlinuz"
    local dev seen_private=0 seen_shared=0
    dev=$(lsblk -no MAJ:MIN "$LOOP" | tr -d ' ')
    # Sample while syncs run (forced, so each writes): the worker thread's
    # namespace (/proc/PID/task/TID/mountinfo) shows the mount; no process's
    # own namespace (/proc/PID/mountinfo, vrebuild's included) ever does.
    for _ in 1 2 3 4 5 6 7 8; do
        "$VREBUILD" --force --helpers-only "$VOL" > /dev/null 2>&1 &
        local pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            grep -qs " $dev " /proc/"$pid"/task/*/mountinfo && seen_private=1
            grep -qs " $dev " /proc/[0-9]*/mountinfo && seen_shared=1
        done
        wait "$pid"
        (( seen_private )) && break
    done
    [ "$seen_shared" -eq 0 ]
    [ "$seen_private" -eq 1 ]
    not_mounted
}

@test "missing device, wrong fstype and no file system are per-target errors" {
    use_target "LABEL=no-such-label-$$"
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper LABEL=no-such-label-$$: update failed: no device with LABEL=no-such-label-$$ is present"* ]]
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper LABEL=no-such-label-$$  error: no device with LABEL=no-such-label-$$ is present"* ]]

    sed -i '/^\[\[helpers\]\]/,$d' "$HOST"
    use_target "LABEL=$LABEL" 'fstype = "vfat"'
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"update failed: device $LOOP holds ext4, not vfat (fstype in the host config)"* ]]

    sed -i '/^\[\[helpers\]\]/,$d' "$HOST"
    use_target "$LOOP"
    dd if=/dev/zero of="$LOOP" bs=1M count=2 conv=notrunc status=none
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"update failed: device $LOOP holds no file system"* ]]
    not_mounted
}

@test "a bad device spec in the host config is refused with file, line and key (exit 78)" {
    use_target "UUID="
    run "$VCHECK" "$VOL"
    [ "$status" -eq 78 ]
    [[ "$output" == *"host.toml:"*"helpers[0].targets[0]: UUID= names no UUID"* ]]
    sed -i 's|"UUID="|"/dev/null"|' "$HOST"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 78 ]
    [[ "$output" == *"helpers[0].targets[0]: \"/dev/null\" is under /dev but is not a block device"* ]]
}

@test "a foreign whole-disk lock makes vrebuild wait, then fail naming the holder; once released it proceeds" {
    use_target "LABEL=$LABEL"
    flock -x "$LOOP" sleep 300 &
    holder=$!
    for _ in $(seq 100); do flock -n "$LOOP" true || break; sleep 0.05; done
    run "$VREBUILD" --helpers-only --wait=1s "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper LABEL=$LABEL: update failed: device $LOOP busy: locked by pid $holder (flock)"* ]]
    not_mounted
    # Released while vrebuild waits: it proceeds.
    release_holder
    flock -x "$LOOP" sleep 1 &
    holder=$!
    run "$VREBUILD" --helpers-only --wait=1m "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper LABEL=$LABEL: helper updated"* ]]
}

@test "vrebuild holds the whole-disk lock while it writes a mounted directory target" {
    mkdir -p "$SANDBOX/esp"
    mount "$LOOP" "$SANDBOX/esp"
    use_target "$SANDBOX/esp"
    flock -x "$LOOP" sleep 300 &
    holder=$!
    for _ in $(seq 100); do flock -n "$LOOP" true || break; sleep 0.05; done
    run "$VREBUILD" --helpers-only --wait=1s "$VOL"
    umount "$SANDBOX/esp"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/esp: update failed: device $LOOP busy: locked by pid $holder (flock)"* ]]
}

@test "kill -9 of vrebuild in the middle of a device sync leaves nothing mounted anywhere" {
    use_target "LABEL=$LABEL"
    # A helper file big enough that the copy is under way when the kill lands.
    head -c 5M /dev/urandom > "$VOL/boot/vmlinuz"
    for round in 1 2 3; do
        "$VREBUILD" --force --helpers-only "$VOL" > /dev/null 2>&1 &
        local pid=$!
        sleep "0.$((round * 2))"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        not_mounted
    done
    run "$VREBUILD" --force --helpers-only "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    not_mounted
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper LABEL=$LABEL  clean"* ]]
}

@test "vcheck by an unprivileged user reports a device target as an error that says it needs root" {
    command -v setpriv >/dev/null || skip "setpriv is not installed (util-linux)"
    use_target "LABEL=$LABEL"
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    chmod -R go+rX "$SANDBOX"
    run setpriv --reuid=65534 --regid=65534 --clear-groups env VOLWATCH_CONFIG="$HOST" "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper LABEL=$LABEL  error: no device with LABEL=$LABEL found; "*" block devices could not be read (needs root)"* ]]
}

@test "a device target with [helpers.entry] gets its boot entries through the same sync; vcheck checks them read-only" {
    use_target "UUID=$ESP_UUID" "$(printf '[helpers.entry]\nid = "debian"\nlinux = "boot/vmlinuz"\noptions = "root=UUID=1 ro"\n')"
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    not_mounted
    entries=$(debugfs -R "ls -p /loader/entries" "$SANDBOX/image" 2>/dev/null | cut -d/ -f6 | grep -v '^\.*$' | tr '\n' ' ')
    [ "$entries" = "debian-1.conf " ]
    debugfs -R "cat /loader/entries/debian-1.conf" "$SANDBOX/image" 2>/dev/null | grep -qx "linux /volwatch/slot-a/boot/vmlinuz"
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper UUID=$ESP_UUID  clean (generation 1)"* ]]
    sed -i 's/^options = .*/options = "root=UUID=1 ro quiet"/' "$HOST"
    before=$(sha256sum < "$SANDBOX/image")
    run "$VCHECK" "$VOL"
    echo "$output"
    [[ "$output" == *"helper UUID=$ESP_UUID  stale: boot entry debian-1.conf on UUID=$ESP_UUID"*"differs from what the host config asks now"* ]]
    [ "$(sha256sum < "$SANDBOX/image")" = "$before" ]
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    entries=$(debugfs -R "ls -p /loader/entries" "$SANDBOX/image" 2>/dev/null | cut -d/ -f6 | grep -v '^\.*$' | sort | tr '\n' ' ')
    [ "$entries" = "debian-1.conf debian-2.conf " ]
    not_mounted
}
