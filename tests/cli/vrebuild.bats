#!/usr/bin/env bats
# End-to-end tests of the real vrebuild binary on sandbox volumes.

load common

bats_require_minimum_version 1.5.0

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
VLOCK=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}

setup() { make_sandbox; }
teardown() {
    [[ -n "${holder:-}" ]] && kill "$holder" 2>/dev/null
    remove_sandbox
}

# add_rebuilder NAME ARGV-TOML [TIMEOUT]: defines a host rebuilder.
add_rebuilder() {
    sed -i "/^\[rebuilders\]/a $1 = { argv = $2, timeout = \"${3:-1m}\" }" "$HOST"
}

# use_rebuilder NAME: points the cache "pack" at rebuilder NAME.
use_rebuilder() {
    sed -i "s/^rebuild = .*/rebuild = \"$1\"/" "$VOL/etc/volwatch/bootcaches.toml"
}

add_helpers() {
    mkdir -p "$VOL/boot" "$SANDBOX/esp1" "$SANDBOX/esp2"
    echo kernel > "$VOL/boot/vmlinuz"
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "out/pack.tgz"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp1", "%s/esp2"]\n' "$VOL" "$SANDBOX" "$SANDBOX" >> "$HOST"
}

volume_id() {
    "$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])'
}

@test "a real rebuilder (tar and gzip) makes a stale volume clean" {
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"pack: rebuilding (product missing (out/pack.tgz)): tar -C $VOL -czf $VOL/out/pack.tgz src"* ]]
    [[ "$output" == *"pack: cache updated in"* ]]
    tar -tzf "$VOL/out/pack.tgz" | grep -q 'src/modules/kernel/a.ko'
    [ -f "$VOL/var/lib/volwatch/build/pack.json" ]
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    # Nothing stale: nothing runs.
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" != *"rebuilding"* ]]
}

@test "a source changed after the build is rebuilt; --force rebuilds a clean cache" {
    "$VREBUILD" "$VOL"
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"src/modules/kernel/b.ko is"*"newer than the last build of out/pack.tgz"* ]]
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    tar -tzf "$VOL/out/pack.tgz" | grep -q 'src/modules/kernel/b.ko'
    run "$VREBUILD" --force "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"pack: rebuilding (forced)"* ]]
}

@test "--cache rebuilds one cache; an unknown cache is a usage error" {
    cat >> "$VOL/etc/volwatch/bootcaches.toml" <<'TOML'

[[cache]]
name    = "second"
sources = ["src"]
product = "out/second.tgz"
rebuild = "pack"
TOML
    run "$VREBUILD" --cache second "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"second: cache updated"* ]]
    [[ "$output" != *"pack: rebuilding"* ]]
    run "$VREBUILD" --cache nope "$VOL"
    [ "$status" -eq 64 ]
    [[ "$output" == *"--cache nope: the volume has no such cache"* ]]
}

@test "the rebuilder runs without a shell, with a clean environment, at the volume root, stdin closed" {
    add_rebuilder probe "[\"sh\", \"-c\", \"env > {product}.env; pwd >> {product}.env; cat >> {product}.env; echo '{cache} {volume}' >> {product}.env; touch {product}\"]"
    use_rebuilder probe
    SECRET_FROM_CALLER=leak run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    env_file="$VOL/out/pack.tgz.env"
    ! grep -q SECRET_FROM_CALLER "$env_file" || false
    grep -qx 'LANG=C.UTF-8' "$env_file"
    grep -qx "$VOL" "$env_file"
    grep -q "^pack path-" "$env_file"
}

@test "a failing rebuilder is counted; give-up after max_failures; a success resets and says recovered" {
    add_rebuilder broken '["sh", "-c", "echo compiler exploded >&2; exit 3"]'
    use_rebuilder broken
    for i in 1 2; do
        run "$VREBUILD" "$VOL"
        [ "$status" -eq 1 ]
        [[ "$output" == *"pack: compiler exploded"* ]]
        [[ "$output" == *"pack: update failed: the rebuilder exited with status 3"* ]]
    done
    run "$VCHECK" "$VOL"
    [[ "$output" == *"failures 2/3"* ]]
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    run "$VCHECK" --json "$VOL"
    [[ "$output" == *'"gave_up": true'* ]]
    [[ "$output" == *'"state": "gave-up"'* ]]
    use_rebuilder pack
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"recovered"* ]]
    run "$VCHECK" --json "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"failures": 0'* ]]
    [[ "$output" == *'"gave_up": false'* ]]
}

@test "a rebuilder exiting 75 is deferred, not counted as a failure" {
    add_rebuilder later '["sh", "-c", "exit 75"]'
    use_rebuilder later
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 75 ]
    [[ "$output" == *"update deferred"* ]]
    run "$VCHECK" --json "$VOL"
    [[ "$output" == *'"failures": 0'* ]]
}

@test "a hanging rebuilder is killed at its timeout and counted" {
    add_rebuilder hang '["sh", "-c", "sleep 60"]' 500ms
    use_rebuilder hang
    SECONDS=0
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    [ "$SECONDS" -lt 30 ]
    [[ "$output" == *"timed out after 500ms"* ]]
    ! pgrep -f 'sleep 60' -P $$ >/dev/null || false
    run "$VCHECK" "$VOL"
    [[ "$output" == *"failures 1/3"* ]]
}

@test "a rebuilder that succeeds without producing the product fails" {
    add_rebuilder liar '["true"]'
    use_rebuilder liar
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the rebuilder succeeded but out/pack.tgz does not exist"* ]]
}

@test "config changes (volume entry or host argv) make the cache stale until rebuilt" {
    "$VREBUILD" "$VOL"
    sed -i 's/depth   = "deep"/depth   = "shallow"/' "$VOL/etc/volwatch/bootcaches.toml"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"config changed since the last build"* ]]
    "$VREBUILD" "$VOL"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    sed -i 's/"-czf"/"-cz", "-f"/' "$HOST"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"config changed since the last build"* ]]
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
}

@test "--dry-run prints the plan and changes nothing" {
    add_helpers
    before=$(tree_state "$SANDBOX")
    run "$VREBUILD" --dry-run "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"plan (--dry-run, nothing changed)"* ]]
    [[ "$output" == *"pack: would-rebuild (product missing (out/pack.tgz)): tar -C $VOL -czf $VOL/out/pack.tgz src"* ]]
    [[ "$output" == *"helper $SANDBOX/esp1: would-update"* ]]
    run "$VREBUILD" --dry-run --json "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"dry_run": true'* ]]
    [ "$(tree_state "$SANDBOX")" = "$before" ]
}

@test "helpers are brought up to date after the rebuild, and --helpers-only skips the rebuild" {
    add_helpers
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper $SANDBOX/esp1: helper updated: copied 2 files"* ]]
    cmp "$VOL/boot/vmlinuz" "$SANDBOX/esp1/volwatch/slot-a/boot/vmlinuz"
    cmp "$VOL/out/pack.tgz" "$SANDBOX/esp2/volwatch/slot-a/out/pack.tgz"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper $SANDBOX/esp1  clean (generation 1)"* ]]
    echo "kernel 2" > "$VOL/boot/vmlinuz"
    echo "module c" > "$VOL/src/modules/kernel/c.ko"
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" != *"rebuilding"* ]]
    cmp "$VOL/boot/vmlinuz" "$SANDBOX/esp1/volwatch/slot-b/boot/vmlinuz"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]  # the cache itself is still stale
    [[ "$output" == *"helper $SANDBOX/esp1  clean (generation 2)"* ]]
}

@test "a missing helper target fails that helper only and is counted" {
    add_helpers
    rmdir "$SANDBOX/esp2"
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/esp2: update failed: helper target $SANDBOX/esp2 is missing or not mounted"* ]]
    [[ "$output" == *"helper $SANDBOX/esp1: helper updated"* ]]
    run "$VCHECK" "$VOL"
    [[ "$output" == *"failures 1/3"* ]]
}

@test "require_mount: a helper target that is not a mount point is an error for that helper only" {
    add_helpers
    sed -i "s|^targets = \[\"$SANDBOX/esp1\", \"$SANDBOX/esp2\"\]|&\nrequire_mount = true|" "$HOST"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp3"]\n' "$VOL" "$SANDBOX" >> "$HOST"
    mkdir "$SANDBOX/esp3"
    grep -q "require_mount = true" "$HOST"
    run "$VCHECK" "$VOL"
    echo "$output"
    [[ "$output" == *"helper $SANDBOX/esp1  error"*"not mounted? $SANDBOX/esp1 is not a mount point (require_mount = true in the host config)"* ]]
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/esp1: update failed: not mounted? $SANDBOX/esp1 is not a mount point"* ]]
    [[ "$output" == *"helper $SANDBOX/esp2: update failed: not mounted?"* ]]
    [[ "$output" == *"helper $SANDBOX/esp3: helper updated"* ]]
    [ -z "$(ls -A "$SANDBOX/esp1")" ]
    run "$VCHECK" "$VOL"
    [ "$status" -ne 0 ]
    [[ "$output" == *"helper $SANDBOX/esp3  clean"* ]]
    [[ "$output" == *"failures 1/3"* ]]
}

@test "a helper named like the slot's manifest is a volume config error naming file, line and key" {
    mkdir -p "$VOL/boot" "$SANDBOX/esp1"
    echo kernel > "$VOL/boot/vmlinuz"
    echo '{}' > "$VOL/MANIFEST.json"
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "MANIFEST.json"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp1"]\n' "$VOL" "$SANDBOX" >> "$HOST"
    line=$(grep -n '^files = ' "$VOL/etc/volwatch/bootcaches.toml" | cut -d: -f1)
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 65 ]
    [[ "$output" == *"bootcaches.toml:$line: helpers.files[1]: \"MANIFEST.json\": the name is reserved"* ]]
    [ ! -e "$SANDBOX/esp1/volwatch" ]
    run "$VCHECK" "$VOL"
    [[ "$output" == *"config-error"* ]]
}

@test "kill -9 of vrebuild leaves the volume locked while its rebuilder runs; the lock is free once it ends (owner of the lock)" {
    add_rebuilder held '["sh", "-c", "echo $$ > $0; while [ ! -e $1 ]; do sleep 0.1; done; touch $2", "{root}/rebuilder.pid", "{root}/go", "{product}"]'
    use_rebuilder held
    "$VREBUILD" "$VOL" 2>"$SANDBOX/err1" &
    first=$!
    for _ in $(seq 600); do [ -s "$VOL/rebuilder.pid" ] && break; sleep 0.1; done
    rebuilder=$(cat "$VOL/rebuilder.pid")
    kill -9 "$first"
    wait "$first" || true
    kill -0 "$rebuilder"  # in its own group, it outlives vrebuild
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 75 ]
    [[ "$output" == *"busy: held by pid"* ]]
    [[ "$output" != *"rebuilding"* ]]
    run "$VCHECK" "$VOL"
    [[ "$output" == *"rebuild in progress"* ]]
    touch "$VOL/go"
    for _ in $(seq 600); do kill -0 "$rebuilder" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$rebuilder" 2>/dev/null; then echo "the rebuilder did not end"; return 1; fi
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"exited without unlocking"* ]]
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
}

@test "busy: another holder makes vrebuild exit 75 naming it; --wait waits" {
    [ -x "$VLOCK" ] || skip "vlock is not built"
    "$VLOCK" "$VOL" -- sleep 3 &
    holder=$!
    for _ in $(seq 50); do "$VCHECK" "$VOL" | grep -q "rebuild in progress" && break; sleep 0.1; done
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 75 ]
    [[ "$output" == *"$VOL: busy: held by pid"*"sleep 3"* ]]
    run "$VREBUILD" --wait=30s "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"cache updated"* ]]
}

@test "--json reports per cache and per helper" {
    add_helpers
    run "$VREBUILD" --json "$VOL"
    [ "$status" -eq 0 ]
    echo "$output" | "$PYTHON" -c '
import json, sys
text = sys.stdin.read()
doc = json.loads(text[text.index("{"):])
v = doc["volumes"][0]
c = v["caches"][0]
assert c["name"] == "pack" and c["action"] == "rebuilt" and c["status"] == 0 and c["seconds"] >= 0, c
assert [h["outcome"] for h in v["helpers"]] == ["updated", "updated"], v["helpers"]
assert doc["exit_code"] == 0
'
}

@test "usage errors exit 64" {
    run "$VREBUILD"
    [ "$status" -eq 64 ]
    [[ "$output" == *"name a VOLUME or use --all"* ]]
    run "$VREBUILD" --bogus "$VOL"
    [ "$status" -eq 64 ]
    run "$VREBUILD" --wait=5x "$VOL"
    [ "$status" -eq 64 ]
}

@test "crash consistency: kill -9 at random instants during helper sync never leaves a mixed set" {
    # kill -9 leaves the page cache intact, so tmpfs (fast, fsync is free)
    # tests the same ordering; power loss is what the fsyncs are for.
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then remove_sandbox; make_sandbox /dev/shm; fi
    seed=${VOLWATCH_STRESS_SEED:-$(date +%s)}
    trials=${VOLWATCH_CRASH_TRIALS:-200}
    RANDOM=$seed
    echo "# seed $seed, $trials trials (VOLWATCH_STRESS_SEED=$seed to repeat)" >&3
    mkdir -p "$VOL/boot" "$SANDBOX/esp1" "$SANDBOX/esp2"
    files=(boot/vmlinuz boot/initrd.img boot/grub.cfg)
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "boot/initrd.img", "boot/grub.cfg"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp1", "%s/esp2"]\n' "$VOL" "$SANDBOX" "$SANDBOX" >> "$HOST"
    # As root, boot loader entries on both targets (each a tmpfs of its own:
    # entries need the root of a file system), with boot counting: the oracle
    # also checks that every entry names a sealed set of its generation and
    # that the default entry names the live set (or the newer one being switched to).
    entries=()
    if [ "$(id -u)" -eq 0 ]; then
        mount -t tmpfs tmpfs "$SANDBOX/esp1"
        mount -t tmpfs tmpfs "$SANDBOX/esp2"
        printf '[helpers.entry]\nlinux = "boot/vmlinuz"\ninitrd = ["boot/initrd.img"]\ntries = 3\n' >> "$HOST"
        entries=(--entries volwatch)
    else
        echo "# not root: the targets are plain directories, so no [helpers.entry] (it needs the root of a file system)" >&3
    fi
    write_version() {  # a multi-megabyte set whose files all say which version they are
        "$PYTHON" "$BATS_TEST_DIRNAME/write_version.py" "$1" "$RANDOM" "${files[@]/#/$VOL/}"
    }
    write_version 0
    # Kills are drawn over the length of one whole run, measured here, so
    # they land throughout the sync on a fast build and a sanitizer build alike.
    local started=${EPOCHREALTIME/./} run_us delay
    "$VREBUILD" --helpers-only "$VOL" 2>/dev/null
    run_us=$(( ${EPOCHREALTIME/./} - started ))
    echo "# one whole run: $((run_us / 1000)) ms" >&3
    version=0
    declare -A held=([esp1]=0 [esp2]=0)  # the version each helper held before the trial
    kept_old=0 mid_sync=0
    for trial in $(seq "$trials"); do
        version=$trial
        write_version "$version"
        "$VREBUILD" --helpers-only "$VOL" 2>/dev/null &
        pid=$!
        delay=$(( (RANDOM * 32768 + RANDOM) % (run_us + 1) ))
        sleep "$((delay / 1000000)).$(printf %06d $((delay % 1000000)))"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unsealed=0
        for esp in esp1 esp2; do
            got=$("$PYTHON" "$BATS_TEST_DIRNAME/helper_check.py" "${entries[@]}" "$SANDBOX/$esp" "${files[@]}") || {
                echo "trial $trial (seed $seed): $esp: $got"; return 1; }
            # Exactly the set it held before this run, or the new one: an
            # older set would be a rollback.
            if [ "$got" != "$version" ] && [ "$got" != "${held[$esp]}" ]; then
                echo "trial $trial (seed $seed): $esp holds version $got, expected ${held[$esp]} or $version"; return 1
            fi
            [ "$got" = "$version" ] || kept_old=$((kept_old + 1))
            held[$esp]=$got
            # A spare slot left without its seal: the kill landed between
            # unsealing it and switching to it.
            for slot in "$SANDBOX/$esp"/volwatch/slot-*; do
                if [ -d "$slot" ] && [ ! -e "$slot/MANIFEST.json" ]; then unsealed=1; fi
            done
        done
        mid_sync=$((mid_sync + unsealed))
    done
    echo "# $mid_sync of $trials kills landed mid-sync (an unsealed spare slot); $kept_old helper checks found the previous set kept" >&3
    # 123 of 200 on a loaded 2-core CI machine; if it ever drops to nothing, the
    # loop no longer tests what it claims to.
    if [ "$trials" -ge 50 ] && [ "$mid_sync" -eq 0 ]; then
        echo "no kill landed mid-sync in $trials trials (seed $seed)"; return 1
    fi
    run "$VREBUILD" --helpers-only "$VOL"
    [ "$status" -eq 0 ]
    for esp in esp1 esp2; do
        got=$("$PYTHON" "$BATS_TEST_DIRNAME/helper_check.py" "${entries[@]}" "$SANDBOX/$esp" "${files[@]}")
        [ "$got" = "$version" ]
        # The newest entry and the previous generation's, nothing older.
        [ "${#entries[@]}" -eq 0 ] || [ "$(ls "$SANDBOX/$esp/loader/entries" | wc -l)" -eq 2 ]
    done
    run "$VCHECK" "$VOL"
    [[ "$output" == *"helper $SANDBOX/esp1  clean"* ]]
    [[ "$output" == *"helper $SANDBOX/esp2  clean"* ]]
}

@test "crash consistency on a loop-mounted helper image, vfat where the kernel has it (root)" {
    [ "$(id -u)" -eq 0 ] || skip "needs root for a loop-mounted image"
    command -v unshare >/dev/null || skip "unshare is not installed"
    truncate -s 64M "$SANDBOX/esp.img"
    if grep -qw vfat /proc/filesystems && command -v mkfs.vfat >/dev/null; then
        mkfs.vfat "$SANDBOX/esp.img" >/dev/null
    else
        # This kernel has no vfat (or dosfstools is missing): a real loop-mounted
        # file system still tests a helper on its own mount.
        echo "# vfat unavailable here (kernel or dosfstools); using a loop-mounted ext4 image" >&3
        mkfs.ext4 -q "$SANDBOX/esp.img"
    fi
    mkdir -p "$SANDBOX/esp" "$VOL/boot"
    files=(boot/vmlinuz boot/initrd.img)
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "boot/initrd.img"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp"]\n' "$VOL" "$SANDBOX" >> "$HOST"
    printf '[helpers.entry]\nlinux = "boot/vmlinuz"\ninitrd = ["boot/initrd.img"]\n' >> "$HOST"
    seed=${VOLWATCH_STRESS_SEED:-$(date +%s)}
    echo "# seed $seed (VOLWATCH_STRESS_SEED=$seed to repeat)" >&3
    run unshare -m bash -c '
        set -e
        mount --make-rprivate /
        mount -o loop "$0/esp.img" "$0/esp"
        RANDOM=$1
        "$PYTHON" "${3%/*}/write_version.py" 0 "$RANDOM" "$0/vol/boot/vmlinuz" "$0/vol/boot/initrd.img"
        "$2" --helpers-only "$0/vol" 2>/dev/null
        for trial in $(seq 40); do
            "$PYTHON" "${3%/*}/write_version.py" "$trial" "$RANDOM" "$0/vol/boot/vmlinuz" "$0/vol/boot/initrd.img"
            "$2" --helpers-only "$0/vol" 2>/dev/null & pid=$!
            sleep "0.0$(( RANDOM % 90 ))"; kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
            "$PYTHON" "$3" --entries volwatch "$0/esp" boot/vmlinuz boot/initrd.img >/dev/null || { echo "trial $trial: $("$PYTHON" "$3" --entries volwatch "$0/esp" boot/vmlinuz boot/initrd.img)"; exit 1; }
        done
        "$2" --helpers-only "$0/vol" 2>/dev/null
        "$PYTHON" "$3" --entries volwatch "$0/esp" boot/vmlinuz boot/initrd.img
        umount "$0/esp"
    ' "$SANDBOX" "$seed" "$VREBUILD" "$BATS_TEST_DIRNAME/helper_check.py"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[-1]}" = "40" ]
}

@test "[helpers.entry] on a target that is no mount point: refused, even with --force, and an error for vcheck; other targets are synced; without it the target is a helper as before" {
    add_helpers
    mkdir "$SANDBOX/plain"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/plain"]\n[helpers.entry]\nlinux = "boot/vmlinuz"\n' "$VOL" "$SANDBOX" >> "$HOST"
    reason="boot entries need the root of the partition the boot loader reads: $SANDBOX/plain is not a mount point ([helpers.entry] in the host config)"
    for force in "" --force; do
        run --separate-stderr "$VREBUILD" $force "$VOL"
        echo "$stderr"
        [ "$status" -eq 1 ]
        [[ "$stderr" == *"helper $SANDBOX/plain: update failed: $reason"* ]]
        [[ "$stderr" == *"helper $SANDBOX/esp1: helper updated"* ]]
        [[ "$stderr" == *"helper $SANDBOX/esp2: helper updated"* ]]
    done
    [ -z "$(ls -A "$SANDBOX/plain")" ]
    [ "$(ls "$VOL/var/lib/volwatch/bootstamps" | wc -l)" -eq 2 ]  # esp1's and esp2's
    run "$VCHECK" "$VOL"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/plain  error: $reason"* ]]
    [[ "$output" == *"helper $SANDBOX/esp1  clean"* ]]
    [[ "$output" == *"failures 2/3"* ]]
    sed -i '/^\[helpers.entry\]$/,$d' "$HOST"
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper $SANDBOX/plain: helper updated"* ]]
    [ ! -e "$SANDBOX/plain/loader" ]
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"helper $SANDBOX/plain  clean (generation 1)"* ]]
}

@test "a helper unmounted since its last sync is an error for that helper only; its bare directory stays untouched (root)" {
    [ "$(id -u)" -eq 0 ] || skip "needs root for a loop-mounted image"
    command -v unshare >/dev/null || skip "unshare is not installed"
    command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 is not installed"
    add_helpers
    truncate -s 16M "$SANDBOX/esp.img"
    mkfs.ext4 -q "$SANDBOX/esp.img"
    mkdir -p "$SANDBOX/esp"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp"]\n' "$VOL" "$SANDBOX" >> "$HOST"
    run unshare -m bash -c '
        set -e
        mount --make-rprivate /
        mount -o loop "$0/esp.img" "$0/esp"
        "$1" "$0/vol" 2>&1
        echo "first=$?"
        umount "$0/esp"
        echo "kernel 2" > "$0/vol/boot/vmlinuz"
        code=0
        "$1" "$0/vol" 2>&1 || code=$?
        echo "second=$code"
        echo "bare=[$(ls -A "$0/esp")]"
        "$2" "$0/vol" 2>&1 || echo "vcheck=$?"
    ' "$SANDBOX" "$VREBUILD" "$VCHECK"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"first=0"* ]]
    [[ "$output" == *"second=1"* ]]
    [[ "$output" == *"helper $SANDBOX/esp: update failed: not mounted? $SANDBOX/esp was a mount point at the last sync (generation 1) and is not one now"* ]]
    [[ "$output" == *"helper $SANDBOX/esp1: helper updated"* ]]
    [[ "$output" == *"helper $SANDBOX/esp2: helper updated"* ]]
    [[ "$output" == *"bare=[]"* ]]
    [[ "$output" == *"helper $SANDBOX/esp  error"*"not mounted?"* ]]
    [[ "$output" == *"vcheck="* ]]
    cmp "$VOL/boot/vmlinuz" "$SANDBOX/esp1/volwatch/slot-b/boot/vmlinuz"
}

@test "SIGTERM stops the rebuilder's whole group and releases the lock without counting a failure" {
    add_rebuilder slow '["sh", "-c", "sleep 30; touch {product}"]'
    use_rebuilder slow
    "$VREBUILD" "$VOL" 2>"$SANDBOX/err" &
    rebuild=$!
    # This run's rebuilder, not another test's "sleep 30": signalling vrebuild
    # before its rebuilder runs would meet a process still starting up.
    for _ in $(seq 300); do pgrep -f "sleep 30; touch $VOL" >/dev/null && break; sleep 0.1; done
    kill -TERM "$rebuild"
    code=0
    wait "$rebuild" || code=$?
    [ "$code" -eq 75 ]
    grep -q "interrupted" "$SANDBOX/err"
    sleep 0.5
    ! pgrep -f "sleep 30; touch $VOL" >/dev/null || false
    [ ! -e "$VOL/out/pack.tgz" ]
    run "$VCHECK" --json "$VOL"
    [[ "$output" == *'"lock": null'* ]]
    [[ "$output" == *'"failures": 0'* ]]
}

@test "a bare --wait never takes the next word as its value" {
    run "$VREBUILD" --wait "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"cache updated"* ]]
}

@test "--all --cache NAME skips volumes without that cache; no volume with it is a usage error" {
    run "$VREBUILD" --all --cache pack
    [ "$status" -eq 0 ]
    run "$VREBUILD" --all --cache nope
    [ "$status" -eq 64 ]
    [[ "$output" == *"--cache nope: no volume has such a cache"* ]]
}

# hold_back_setup: helper files boot/vmlinuz (declared dependent on "pack"),
# out/pack.tgz (its product) and boot/grub.cfg (independent), each written by
# write_version.py so helper_check.py can tell which version a target holds;
# "pack" copies src/staged to its product, "half" writes half of it and fails.
hold_back_setup() {
    mkdir -p "$VOL/boot" "$SANDBOX/esp1" "$SANDBOX/esp2"
    cat >> "$VOL/etc/volwatch/bootcaches.toml" <<'TOML'

[helpers]
files   = ["boot/vmlinuz", "out/pack.tgz", "boot/grub.cfg"]
depends = { "boot/vmlinuz" = ["pack"] }   # a new kernel only with its new "initramfs"
TOML
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp1", "%s/esp2"]\n' "$VOL" "$SANDBOX" "$SANDBOX" >> "$HOST"
    sed -i 's|^pack = .*|pack = { argv = ["cp", "{root}/src/staged", "{product}"] }|' "$HOST"
    add_rebuilder half '["sh", "-c", "head -c 1000 $0/src/staged > $1; exit 1", "{root}", "{product}"]'  # no spaces in the sandbox
    add_rebuilder fails '["false"]'
}

# write_set VERSION FILE...: writes FILE (relative to the volume) as VERSION.
write_set() {
    local version=$1
    shift
    "$PYTHON" "$BATS_TEST_DIRNAME/write_version.py" "$version" "$RANDOM" "${@/#/$VOL/}"
}

holds() {  # holds TARGET VERSION FILE...: the oracle reads VERSION for every FILE
    local got
    got=$("$PYTHON" "$BATS_TEST_DIRNAME/helper_check.py" "$SANDBOX/$1" "${@:3}") || { echo "$1: $got"; return 1; }
    [ "$got" = "$2" ] || { echo "$1 holds $got for ${*:3}, expected $2"; return 1; }
}

@test "a failed cache holds back its product and the files that depend on it; the others are still synced" {
    hold_back_setup
    write_set 1 boot/vmlinuz boot/grub.cfg src/staged
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    for esp in esp1 esp2; do holds $esp 1 boot/vmlinuz out/pack.tgz boot/grub.cfg; done
    # A new kernel, a new boot menu and new sources; the rebuild dies half way.
    write_set 2 boot/vmlinuz boot/grub.cfg src/staged
    use_rebuilder half
    run --separate-stderr "$VREBUILD" --json "$VOL"
    echo "$stderr"
    [ "$status" -eq 1 ]
    [[ $stderr == *"helper $SANDBOX/esp1: helper updated: copied 1 files and kept 2 held-back from generation 1"* ]]
    [[ $stderr == *"helper $SANDBOX/esp1: held back boot/vmlinuz: depends on cache pack ([helpers] depends), which failed (the rebuilder exited with status 1)"* ]]
    [[ $stderr == *"helper $SANDBOX/esp2: held back out/pack.tgz: the product of cache pack, which failed (the rebuilder exited with status 1)"* ]]
    "$PYTHON" - "$output" <<'PY'
import json, sys
volume = json.loads(sys.argv[1])["volumes"][0]
assert [c["action"] for c in volume["caches"]] == ["failed"], volume["caches"]
for helper in volume["helpers"]:
    assert helper["outcome"] == "updated" and helper["generation"] == 2, helper
    assert helper["files"] == ["boot/grub.cfg"], helper
    assert [(h["file"], h["caches"]) for h in helper["held_back"]] == [("boot/vmlinuz", ["pack"]), ("out/pack.tgz", ["pack"])], helper
PY
    # Never a new kernel with an old initramfs: the held files are still the
    # complete old pair, beside the new boot menu.
    for esp in esp1 esp2; do
        holds $esp 1 boot/vmlinuz out/pack.tgz
        holds $esp 2 boot/grub.cfg
    done
    # The bootstamp keeps the targets stale for the held files.
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ $output == *"helper $SANDBOX/esp1  stale: boot/vmlinuz changed since it was copied"* ]]
    # Failing again with only held files differing writes no new generation.
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    [[ $output == *"helper $SANDBOX/esp1: held back: only held-back files differ from the live set; $SANDBOX/esp1 keeps generation 2"* ]]
    holds esp1 2 boot/grub.cfg
    grep -q '^generation=2$' "$SANDBOX/esp1/volwatch/current"
    # The next successful run brings the whole set up to date.
    use_rebuilder pack
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    for esp in esp1 esp2; do holds $esp 2 boot/vmlinuz out/pack.tgz boot/grub.cfg; done
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    [[ $output == *"helper $SANDBOX/esp1  clean (generation 3)"* ]]
}

@test "a rebuilder that fails without touching its product (false) leaves the held files' targets clean" {
    hold_back_setup
    write_set 1 boot/vmlinuz boot/grub.cfg src/staged
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    write_set 2 boot/grub.cfg src/staged
    use_rebuilder fails
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    [[ $output == *"held back out/pack.tgz: the product of cache pack, which failed (the rebuilder exited with status 1)"* ]]
    for esp in esp1 esp2; do
        holds $esp 1 boot/vmlinuz out/pack.tgz
        holds $esp 2 boot/grub.cfg
    done
    # The kept copies equal the volume's files, so the stamps still match them:
    # only the cache is stale.
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ $output == *"pack  stale"* ]]
    [[ $output == *"helper $SANDBOX/esp1  clean (generation 2)"* ]]
    [[ $output == *"failures 1/3"* ]]
}

@test "a target with no live set cannot be synced while a file is held back, and says so" {
    hold_back_setup
    write_set 1 boot/vmlinuz boot/grub.cfg src/staged
    use_rebuilder fails
    run --separate-stderr "$VREBUILD" --json "$VOL"
    [ "$status" -eq 1 ]
    [[ $stderr == *"helper $SANDBOX/esp1: held back: $SANDBOX/esp1 cannot be synced this time: it has no complete set yet to keep the held-back boot/vmlinuz, out/pack.tgz from"* ]]
    "$PYTHON" -c '
import json, sys
for h in json.loads(sys.argv[1])["volumes"][0]["helpers"]:
    assert h["outcome"] == "held-back" and h["files"] == [] and len(h["held_back"]) == 2, h
' "$output"
    [ ! -e "$SANDBOX/esp1/volwatch" ]
    [ ! -e "$SANDBOX/esp2/volwatch" ]
    # --dry-run shows the same plan for a cache whose check already fails.
    run "$VREBUILD" --dry-run "$VOL"
    [[ $output == *"pack: would-rebuild"* ]]
    use_rebuilder pack
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 0 ]
    for esp in esp1 esp2; do holds $esp 1 boot/vmlinuz out/pack.tgz boot/grub.cfg; done
}

@test "a held-back file whose live copy was changed behind volwatch's back fails that target, which keeps its set" {
    hold_back_setup
    write_set 1 boot/vmlinuz boot/grub.cfg src/staged
    run "$VREBUILD" "$VOL"
    echo "$output"
    [ "$status" -eq 0 ]
    slot=$(sed -n 's/^slot=//p' "$SANDBOX/esp1/volwatch/current")
    "$PYTHON" - "$SANDBOX/esp1/volwatch/slot-$slot/boot/vmlinuz" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[-1:] = b"y"  # same size, other content
open(path, "wb").write(bytes(data))
PY
    write_set 2 boot/grub.cfg src/staged
    use_rebuilder fails
    run "$VREBUILD" "$VOL"
    [ "$status" -eq 1 ]
    [[ $output == *"helper $SANDBOX/esp1: update failed: the live copy of the held-back boot/vmlinuz on $SANDBOX/esp1 differs from its manifest"* ]]
    holds esp1 1 boot/grub.cfg
    grep -q '^generation=1$' "$SANDBOX/esp1/volwatch/current"
    holds esp2 2 boot/grub.cfg
}

@test "[helpers] depends is validated with file, line and key" {
    mkdir -p "$VOL/boot"
    echo kernel > "$VOL/boot/vmlinuz"
    base=$(cat "$VOL/etc/volwatch/bootcaches.toml")
    config="$VOL/etc/volwatch/bootcaches.toml"
    try() {
        printf '%s\n\n[helpers]\nfiles = ["boot/vmlinuz"]\n%s\n' "$base" "$1" > "$config"
        run "$VCHECK" "$VOL"
        [ "$status" -eq 65 ] || { echo "status $status: $output"; return 1; }
        [[ $output == *"$config:$2: $3"* ]] || { echo "$output"; return 1; }
    }
    try 'depends = { "boot/initrd.img" = ["pack"] }' 12 'helpers.depends."boot/initrd.img": "boot/initrd.img" is not one of the helper files ([helpers] files)'
    try 'depends = { "boot/vmlinuz" = ["initramfs"] }' 12 'helpers.depends."boot/vmlinuz"[0]: "initramfs" is not a cache of this volume'
    try 'depends = { "boot/vmlinuz" = [] }' 12 'helpers.depends."boot/vmlinuz": must not be empty'
    try 'depends = { "boot/vmlinuz" = "pack" }' 12 'helpers.depends."boot/vmlinuz": expected an array of cache names, found a string'
    try 'depends = { "boot/vmlinuz" = ["pack", "pack"] }' 12 'helpers.depends."boot/vmlinuz"[1]: duplicate cache "pack"'
    try 'depends = { "boot/./vmlinuz" = ["pack"], "boot/vmlinuz" = ["pack"] }' 12 'helpers.depends."boot/vmlinuz": "boot/vmlinuz" is listed twice'
    try 'depends = ["pack"]' 12 'helpers.depends: expected a table, found an array'
    printf '%s\n\n[helpers]\nfiles = ["boot/vmlinuz"]\n\n[helpers.depends]\n"boot/vmlinuz" = ["pack"]\n' "$base" > "$config"
    make_product_fresh
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
}
