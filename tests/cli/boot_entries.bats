#!/usr/bin/env bats
# Boot Loader Specification Type #1 entries written by vrebuild's helper sync
# ([helpers.entry] in the host config) and checked by vcheck.

load common

bats_require_minimum_version 1.5.0

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}

# The target is a tmpfs: boot entries need the root of a file system (a
# plain directory is refused, see the tests at the end).
setup() {
    [[ $(id -u) -eq 0 ]] || skip "needs root: a [helpers.entry] target must be the root of a file system (a tmpfs mounted on it)"
    make_sandbox
    mkdir -p "$VOL/boot" "$SANDBOX/esp"
    mount -t tmpfs tmpfs "$SANDBOX/esp"
    new_kernel 1
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "boot/initrd.img"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    cat >> "$HOST" <<TOML

[[helpers]]
volume  = "$VOL"
targets = ["$SANDBOX/esp"]
[helpers.entry]
id      = "debian"
title   = "Debian GNU/Linux"
linux   = "boot/vmlinuz"
initrd  = ["boot/initrd.img"]
options = "root=UUID=2f6b ro volwatch.generation={generation} volwatch.slot={slot}"
TOML
    ESP=$SANDBOX/esp
    ENTRIES=$ESP/loader/entries
}
teardown() { remove_sandbox; }  # unmounts the tmpfs (and any bind mount) first

entries() { ls "$ENTRIES" | tr '\n' ' '; }

oracle() {  # oracle VERSION: the live set is VERSION and the entries agree with the slots (helper_check.py)
    local got
    got=$("$PYTHON" "$BATS_TEST_DIRNAME/helper_check.py" --entries debian "$ESP" boot/vmlinuz boot/initrd.img) || {
        echo "oracle: $got"; return 1; }
    [ "$got" = "$1" ] || { echo "oracle: the live set is version $got, expected $1"; return 1; }
}

new_kernel() {  # new_kernel VERSION: a kernel and initramfs pair of that version
    "$PYTHON" "$BATS_TEST_DIRNAME/write_version.py" "$1" "$RANDOM" "$VOL/boot/vmlinuz" "$VOL/boot/initrd.img"
}

@test "each sync writes the new generation's entry and keeps the previous; the third removes only the reused slot's" {
    run "$VREBUILD" --helpers-only "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(entries)" = "debian-1.conf " ]
    diff "$ENTRIES/debian-1.conf" - <<'EOF2'
# volwatch: generation 1, slot a; vrebuild replaces this file
title Debian GNU/Linux (generation 1)
sort-key debian
version 1
linux /volwatch/slot-a/boot/vmlinuz
initrd /volwatch/slot-a/boot/initrd.img
options root=UUID=2f6b ro volwatch.generation=1 volwatch.slot=a
EOF2
    new_kernel 2
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 0 ]
    [ "$(entries)" = "debian-1.conf debian-2.conf " ]
    grep -qx "linux /volwatch/slot-b/boot/vmlinuz" "$ENTRIES/debian-2.conf"
    oracle 2
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper $ESP  clean (generation 2)"* ]]
    touch -d @1000000000 "$ENTRIES/debian-2.conf"
    before=$(stat -c %Y "$ENTRIES/debian-2.conf")
    new_kernel 3
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 0 ]
    [ "$(entries)" = "debian-2.conf debian-3.conf " ]
    [ "$(stat -c %Y "$ENTRIES/debian-2.conf")" = "$before" ]  # the previous generation's entry is untouched
    grep -qx "linux /volwatch/slot-a/boot/vmlinuz" "$ENTRIES/debian-3.conf"
    [ -z "$(ls -A "$ENTRIES" | grep '^\.')" ]  # no temporary left
    oracle 3
}

@test "entries of another id and other files in loader/entries are left alone" {
    mkdir -p "$ENTRIES"
    printf 'title Arch\nlinux /vmlinuz-linux\n' > "$ENTRIES/arch.conf"
    printf 'title old\nlinux /volwatch/slot-a/boot/vmlinuz\n' > "$ENTRIES/volwatch-1.conf"
    for k in 1 2 3; do new_kernel "$k"; "$VREBUILD" --helpers-only "$VOL"; done
    [ "$(entries)" = "arch.conf debian-2.conf debian-3.conf volwatch-1.conf " ]
    [ "$(cat "$ENTRIES/arch.conf")" = "$(printf 'title Arch\nlinux /vmlinuz-linux')" ]
}

@test "tries gives +N names; a counted try is normal; a live entry out of tries is reported and refused without --force" {
    sed -i 's/^options = .*/&\ntries   = 3/' "$HOST"
    "$VREBUILD" --helpers-only "$VOL"
    new_kernel 2
    "$VREBUILD" --helpers-only "$VOL"
    [ "$(entries)" = "debian-1+3.conf debian-2+3.conf " ]
    mv "$ENTRIES/debian-2+3.conf" "$ENTRIES/debian-2+1-2.conf"   # systemd-boot counted two tries
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper $ESP  clean (generation 2)"* ]]
    oracle 2
    mv "$ENTRIES/debian-2+1-2.conf" "$ENTRIES/debian-2+0-3.conf"  # and the third: out of tries
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *"helper $ESP  error: generation 2 failed to boot (entry debian-2+0-3.conf has no tries left); the boot loader falls back to generation 1"* ]]
    "$VCHECK" --json "$VOL" | "$PYTHON" -c '
import json, sys
helper = json.load(sys.stdin)["volumes"][0]["helpers"][0]
assert helper["state"] == "error", helper
assert helper["reason"].startswith("generation 2 failed to boot (entry debian-2+0-3.conf has no tries left)"), helper'
    "$VCHECK" --format=prometheus "$VOL" | grep -q "^volwatch_helper_error{.*esp.*} 1$"
    new_kernel 3
    state=$(tree_state "$ESP")
    run "$VREBUILD" --helpers-only "$VOL"
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *"helper $ESP: update failed: helper target $ESP: generation 2 failed to boot (entry debian-2+0-3.conf has no tries left); the boot loader falls back to generation 1; refusing to overwrite that set (vrebuild --force does)"* ]]
    [ "$(tree_state "$ESP")" = "$state" ]
    run "$VREBUILD" --helpers-only --force "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(entries)" = "debian-2+0-3.conf debian-3+3.conf " ]
    oracle 3
}

@test "changed options make the target stale and the next sync writes a new generation" {
    "$VREBUILD" --helpers-only "$VOL"
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper $ESP  clean (generation 1)"* ]]
    sed -i 's/^options = .*/options = "root=UUID=2f6b ro quiet"/' "$HOST"
    run "$VCHECK" "$VOL"
    echo "$output"
    [[ "$output" == *"helper $ESP  stale: boot entry debian-1.conf on $ESP differs from what the host config asks now ([helpers.entry])"* ]]
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"generation 2"* ]]
    grep -qx "options root=UUID=2f6b ro quiet" "$ENTRIES/debian-2.conf"
    rm "$ENTRIES/debian-2.conf"
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper $ESP  stale: $ESP has no boot entry for its live generation 2 (loader/entries/debian-2.conf)"* ]]
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$(entries)" = "debian-3.conf " ]
    oracle 1
}

@test "an entry naming a slot that is not sealed with its generation is an error for vcheck" {
    "$VREBUILD" --helpers-only "$VOL"
    sed 's/slot-a/slot-b/' "$ENTRIES/debian-1.conf" > "$ENTRIES/debian-7.conf"
    run "$VCHECK" "$VOL"
    [ "$status" -ne 0 ]
    [[ "$output" == *"helper $ESP  error: boot entry debian-7.conf names slot b, which is not sealed with generation 7 on $ESP"* ]]
    run "$PYTHON" "$BATS_TEST_DIRNAME/helper_check.py" --entries debian "$ESP" boot/vmlinuz
    [ "$status" -eq 1 ]
    [[ "$output" == *"debian-7.conf names slot b, not sealed with generation 7"* ]]
}

@test "a loader.conf default that does not match the live entry is an error for vcheck; a matching pattern is not" {
    "$VREBUILD" "$VOL"
    mkdir -p "$ESP/loader"
    printf 'timeout 3\n' > "$ESP/loader/loader.conf"
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    printf 'timeout 3\ndefault  other-os.conf \n' > "$ESP/loader/loader.conf"
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $ESP  error: $ESP/loader/loader.conf sets 'default other-os.conf', which does not match the live generation's entry debian-1.conf: systemd-boot will not start the newest set by default (remove the line, or use a pattern such as 'default debian-*')"* ]]
    printf 'default @saved\n' > "$ESP/loader/loader.conf"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"sets 'default @saved'"* ]]
    printf '# default other\ndefault Debian-*\n' > "$ESP/loader/loader.conf"
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "a linux file that is not a helper file fails that target and writes nothing; --dry-run writes nothing" {
    sed -i 's|^linux .*|linux   = "boot/vmlinuz-6.1"|' "$HOST"
    run "$VREBUILD" --helpers-only "$VOL"
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *"helper $ESP: update failed: helper target $ESP: [helpers.entry] linux \"boot/vmlinuz-6.1\" is not one of the volume's helper files ([helpers] files); no boot entry can name it; nothing written"* ]]
    [ -z "$(ls -A "$ESP")" ]
    sed -i 's|^linux .*|linux   = "boot/vmlinuz"|' "$HOST"
    run "$VREBUILD" --helpers-only --dry-run "$VOL"
    [ "$status" -eq 0 ]
    [ -z "$(ls -A "$ESP")" ]
}

@test "[helpers.entry] errors name file, line and key" {
    sed -i 's/^options = .*/options = "root={root}"/' "$HOST"
    line=$(grep -n '^options = ' "$HOST" | cut -d: -f1)
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 78 ]
    [[ "$output" == *"host.toml:$line: helpers[0].entry.options: unknown placeholder {root} in \"root={root}\"; the placeholders are {generation} and {slot}"* ]]
    [ -z "$(ls -A "$ESP")" ]
}

@test "a bind mount of a subdirectory is refused, even with --force, and an error for vcheck; a bind mount of the whole file system is its root" {
    umount "$ESP"
    mkdir "$SANDBOX/fs"
    mount -t tmpfs tmpfs "$SANDBOX/fs"
    mkdir "$SANDBOX/fs/sub"
    mount --bind "$SANDBOX/fs/sub" "$ESP"
    reason="boot entries need the root of the partition the boot loader reads: $ESP is a bind mount of /sub of its file system, not of its root ([helpers.entry] in the host config)"
    for force in "" --force; do
        run --separate-stderr "$VREBUILD" --helpers-only $force "$VOL"
        echo "$stderr"
        [ "$status" -eq 1 ]
        [[ "$stderr" == *"helper $ESP: update failed: $reason"* ]]
    done
    [ -z "$(ls -A "$SANDBOX/fs/sub")" ]
    [ -z "$(ls -A "$VOL/var/lib/volwatch/bootstamps" 2>/dev/null)" ]
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $ESP  error: $reason"* ]]
    "$VCHECK" --json "$VOL" | REASON=$reason "$PYTHON" -c '
import json, os, sys
helper = json.load(sys.stdin)["volumes"][0]["helpers"][0]
assert helper["state"] == "error" and helper["reason"] == os.environ["REASON"], helper'
    umount "$ESP"
    mount --bind "$SANDBOX/fs" "$ESP"
    run "$VREBUILD" --helpers-only "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(entries)" = "debian-1.conf " ]
    oracle 1
}

@test "a plain directory is refused, even with --force; the mounted target of another table is still synced" {
    mkdir "$SANDBOX/plain"
    sed -i "s|^targets = \[\"$ESP\"\]|targets = [\"$SANDBOX/plain\"]|" "$HOST"
    cat >> "$HOST" <<TOML

[[helpers]]
volume  = "$VOL"
targets = ["$ESP"]
[helpers.entry]
id      = "debian"
linux   = "boot/vmlinuz"
TOML
    reason="boot entries need the root of the partition the boot loader reads: $SANDBOX/plain is not a mount point ([helpers.entry] in the host config)"
    for force in "" --force; do
        run --separate-stderr "$VREBUILD" --helpers-only $force "$VOL"
        echo "$stderr"
        [ "$status" -eq 1 ]
        [[ "$stderr" == *"helper $SANDBOX/plain: update failed: $reason"* ]]
        [[ "$stderr" == *"helper $ESP: helper updated"* ]]
    done
    [ -z "$(ls -A "$SANDBOX/plain")" ]
    [ "$(ls "$VOL/var/lib/volwatch/bootstamps" | wc -l)" -eq 1 ]  # the ESP's alone
    [ "$(entries)" = "debian-1.conf debian-2.conf " ]
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/plain  error: $reason"* ]]
    [[ "$output" == *"helper $ESP  clean (generation 2)"* ]]
}