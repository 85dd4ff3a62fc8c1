#!/usr/bin/env bats
# End-to-end tests of the real vcheck binary on sandbox volumes.

load common

setup() { make_sandbox; }
teardown() { remove_sandbox; }

@test "a clean volume reports clean and exits 0" {
    make_product_fresh
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"$VOL: clean"* ]]
    [[ "$output" == *"pack  clean"* ]]
}

@test "no VOLUME argument means every volume, like --all" {
    make_product_fresh
    run "$VCHECK"
    [ "$status" -eq 0 ]
    [[ "$output" == *"$VOL: clean"* ]]
    run "$VCHECK" --all
    [ "$status" -eq 0 ]
    [[ "$output" == *"$VOL: clean"* ]]
}

@test "a missing product is stale with exit 1" {
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"pack  stale: product missing (out/pack.tgz)"* ]]
}

@test "a source change makes the cache stale and names the file" {
    make_product_fresh
    sleep 2.1
    echo "module b" > "$VOL/src/modules/kernel/b.ko"
    run "$VCHECK" "$VOL/src"
    [ "$status" -eq 1 ]
    [[ "$output" == *"stale: src/modules/kernel"* ]]
    [[ "$output" == *"newer than out/pack.tgz (no build record"* ]]
}

@test "a file installed with an old mtime is caught by its ctime" {
    make_product_fresh
    sleep 2.1
    echo "module c" > "$VOL/src/modules/kernel/c.ko"
    touch -d 2000-01-01 "$VOL/src/modules/kernel/c.ko" "$VOL/src/modules/kernel" "$VOL/src/modules" "$VOL/src"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"stale"* ]]
}

@test "--json has the documented fields" {
    make_product_fresh
    run "$VCHECK" --json "$VOL"
    [ "$status" -eq 0 ]
    echo "$output" | "$PYTHON" -c '
import json, sys
doc = json.load(sys.stdin)
v = doc["volumes"][0]
for key in ("root", "id", "state", "caches", "helpers", "lock", "failures", "attempts"):
    assert key in v, key
assert v["state"] == "clean", v
assert v["lock"] is None
c = v["caches"][0]
assert (c["name"], c["state"], c["reason"]) == ("pack", "clean", "")
assert doc["exit_code"] == 0
'
}

@test "--json validates against docs/schema/vcheck.schema.json" {
    "$PYTHON" -c 'import jsonschema' 2>/dev/null || skip "python3-jsonschema is not installed"
    run "$VCHECK" --format=json "$VOL"
    [ "$status" -eq 1 ]
    echo "$output" > "$SANDBOX/out.json"
    "$PYTHON" - "$VOLWATCH_SOURCE_DIR/docs/schema/vcheck.schema.json" "$SANDBOX/out.json" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
jsonschema.validate(doc, schema)
assert doc["volumes"][0]["state"] == "stale"
PY
}

@test "--json survives a source file name that is not UTF-8, for every volume" {
    make_product_fresh
    mkdir -p "$SANDBOX/other/etc/volwatch"
    sed -i "s|^volumes = .*|volumes = [\"$VOL\", \"$SANDBOX/other\"]|" "$HOST"
    sleep 2.1
    echo "module x" > "$VOL/src/modules/kernel/"$'bad\xffname.ko'
    run "$VCHECK" --json --all
    [ "$status" -eq 1 ]
    echo "$output" | "$PYTHON" -c '
import json, sys
doc = json.load(sys.stdin)
assert len(doc["volumes"]) == 2, doc
v = doc["volumes"][0]
assert v["state"] == "stale", v
reason = v["caches"][0]["reason"]
assert "src/modules/kernel/bad\ufffdname.ko is" in reason, reason
assert doc["exit_code"] == 1
'
}

@test "control characters and bad UTF-8 from the volume reach the terminal escaped" {
    make_product_fresh
    sleep 2.1
    echo "module y" > "$VOL/src/modules/kernel/"$'a\033[2Jb\rc.ko'
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *'src/modules/kernel/a\x1b[2Jb\rc.ko is'* ]]
    [[ "$output" != *$'\033'* && "$output" != *$'\r'* ]]
    rm "$VOL/src/modules/kernel/"$'a\033[2Jb\rc.ko'
    echo "module x" > "$VOL/src/modules/kernel/"$'bad\xffname.ko'
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *'src/modules/kernel/bad\xffname.ko is'* ]]
    # Strings from the untrusted volume config, and arguments echoed on stderr.
    sed -i 's|sources = \["src"\]|sources = ["/\\u001b[31mRED"]|' "$VOL/etc/volwatch/bootcaches.toml"
    run "$VCHECK" "$VOL" $'/nonexistent\033[31m'
    [ "$status" -eq 66 ]
    [[ "$output" == *'\x1b[31mRED'* ]]
    [[ "$output" == *'vcheck: /nonexistent\x1b[31m: '* ]]
    [[ "$output" != *$'\033'* ]]
}

@test "--format=prometheus prints valid gauge families" {
    run "$VCHECK" --format=prometheus "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"# TYPE volwatch_cache_stale gauge"* ]]
    [[ "$output" == *"volwatch_cache_stale{volume=\"$VOL\",id=\"path-"*"\",cache=\"pack\"} 1"* ]]
    # Every line is a comment or "name{labels} number".
    echo "$output" | "$PYTHON" -c '
import re, sys
sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\",?)*\})? -?[0-9.e+]+$")
families = set()
for line in sys.stdin.read().splitlines():
    if line.startswith("# TYPE "):
        name = line.split()[2]
        assert name not in families, "family declared twice: " + name
        families.add(name)
    elif not line.startswith("# HELP "):
        assert sample.match(line), line
'
}

@test "--quiet prints nothing and keeps the exit status" {
    run "$VCHECK" --quiet "$VOL"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    make_product_fresh
    run "$VCHECK" -q --all
    [ "$status" -eq 0 ]
    [ -z "$output" ]
}

@test "an invalid volume config exits 65 naming file, line and key" {
    cat >> "$VOL/etc/volwatch/bootcaches.toml" <<'TOML'

[[cache]]
name    = "evil"
sources = ["src"]
product = "out/evil"
rebuild = "pack"
argv    = ["rm", "-rf", "/"]
TOML
    run "$VCHECK" "$VOL"
    [ "$status" -eq 65 ]
    [[ "$output" == *"config-error"* ]]
    [[ "$output" == *"$VOL/etc/volwatch/bootcaches.toml:15: cache[1].argv: unknown key"* ]]
}

@test "a volume naming a rebuilder the host does not define is a config error" {
    sed -i 's/rebuild = "pack"/rebuild = "rm-rf"/' "$VOL/etc/volwatch/bootcaches.toml"
    run "$VCHECK" --json "$VOL"
    [ "$status" -eq 65 ]
    [[ "$output" == *'rebuilder \"rm-rf\" is not defined in the host config'* ]]
}

@test "a source path escaping the volume is refused" {
    sed -i 's|sources = \["src"\]|sources = ["../../etc"]|' "$VOL/etc/volwatch/bootcaches.toml"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 65 ]
    [[ "$output" == *'cache[0].sources[0]: "../../etc": ".." would leave the volume'* ]]
    ln -s /etc "$VOL/etc-link"
    sed -i 's|sources = \["../../etc"\]|sources = ["etc-link/passwd"]|' "$VOL/etc/volwatch/bootcaches.toml"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 65 ]
    [[ "$output" == *"resolves outside the volume"* ]]
}

@test "unknown volumes exit 66" {
    run "$VCHECK" "$SANDBOX/does-not-exist"
    [ "$status" -eq 66 ]
    [[ "$output" == *"vcheck: $SANDBOX/does-not-exist: No such file or directory"* ]]
    mkdir -p "$SANDBOX/plain"
    run "$VCHECK" "$SANDBOX/plain"
    [ "$status" -eq 66 ]
    [[ "$output" == *"not a volwatch volume"* ]]
    run "$VCHECK" UUID=00000000-0000-0000-0000-000000000000
    [ "$status" -eq 66 ]
}

@test "exit-code precedence: unknown beats config error beats stale" {
    mkdir -p "$SANDBOX/bad/etc/volwatch"
    echo 'version = "one"' > "$SANDBOX/bad/etc/volwatch/bootcaches.toml"
    sed -i "s|^volumes = .*|volumes = [\"$VOL\", \"$SANDBOX/bad\"]|" "$HOST"
    run "$VCHECK" --all
    [ "$status" -eq 65 ]
    [[ "$output" == *"$VOL: stale"* ]]
    [[ "$output" == *"$SANDBOX/bad: config-error"* ]]
    [[ "$output" == *"bootcaches.toml:1: version: expected an integer, found a string"* ]]
    run "$VCHECK" "$VOL" "$SANDBOX/bad" /nonexistent
    [ "$status" -eq 66 ]
}

@test "usage errors exit 64" {
    run "$VCHECK" --no-such-option
    [ "$status" -eq 64 ]
    [[ "$output" == *"Try 'vcheck --help'."* ]]
    run "$VCHECK" --format=xml
    [ "$status" -eq 64 ]
    run "$VCHECK" --json --format=human
    [ "$status" -eq 64 ]
}

@test "host config errors exit 78; --config beats VOLWATCH_CONFIG" {
    echo 'settle = 5' > "$SANDBOX/bad-host.toml"
    run "$VCHECK" --config "$SANDBOX/bad-host.toml" "$VOL"
    [ "$status" -eq 78 ]
    [[ "$output" == *"$SANDBOX/bad-host.toml:1: settle: expected a string, found an integer"* ]]
    VOLWATCH_CONFIG="$SANDBOX/bad-host.toml" run "$VCHECK" "$VOL"
    [ "$status" -eq 78 ]
    VOLWATCH_CONFIG="$SANDBOX/bad-host.toml" run "$VCHECK" --config "$HOST" "$VOL"
    [ "$status" -eq 1 ]
    run "$VCHECK" --config "$SANDBOX/missing.toml"
    [ "$status" -eq 78 ]
    [[ "$output" == *"cannot open host config"* ]]
}

@test "a live lock holder is reported as rebuild in progress" {
    make_product_fresh
    sleep 300 &
    holder=$!
    id=$("$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])')
    start=$(awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[20] }' "/proc/$holder/stat")
    boot=$(cat /proc/sys/kernel/random/boot_id)
    mkdir -p "$SANDBOX/locks/volumes"
    printf 'volwatch-lock=1\nvolume=%s\nowner=%s:%s:%s\ncommand=update-initramfs -u\npurpose=vrebuild\nsince=%s\nfailures=1\nattempts=2\n' \
        "$VOL" "$holder" "$start" "$boot" "$(date +%s)" > "$SANDBOX/locks/volumes/$id.lock"
    run "$VCHECK" "$VOL"
    kill "$holder"
    [ "$status" -eq 0 ]
    [[ "$output" == *"$VOL: locked"* ]]
    [[ "$output" == *"rebuild in progress: held by pid $holder (update-initramfs -u), vrebuild since"* ]]
    [[ "$output" == *"failures 1/3, attempts 2/25"* ]]
    # Once the holder is gone, the record no longer holds the volume.
    wait "$holder" 2>/dev/null || true
    run "$VCHECK" --json "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *'"lock": null'* ]]
}

@test "a real vlock holder is shown with its waiters and the counters" {
    local vlock=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}
    make_product_fresh
    run "$vlock" "$VOL" -- sh -c 'exit 3'
    [ "$status" -eq 3 ]
    "$vlock" "$VOL" -- sleep 60 &
    local holder=$! waiter
    locked() { "$VCHECK" "$VOL" | grep -q "rebuild in progress"; }
    waiting() { "$VCHECK" "$VOL" | grep -q ", 1 waiting"; }
    for _ in $(seq 250); do locked && break; sleep 0.02; done
    "$vlock" "$VOL" --wait=60s -- true &
    waiter=$!
    for _ in $(seq 250); do waiting && break; sleep 0.02; done
    run "$VCHECK" "$VOL"
    local human=$output human_status=$status
    run "$VCHECK" --json "$VOL"
    local json=$output command
    command=$(pgrep -P "$holder")  # vlock -- CMD names CMD's process as the holder
    pkill -TERM -P "$holder"
    wait "$holder" "$waiter" || true
    [ "$human_status" -eq 0 ]
    [[ $human == *"$VOL: locked"* ]]
    [[ $human == *"rebuild in progress: held by pid $command (sleep 60), vlock since "*", 1 waiting"* ]]
    [[ $human == *"failures 1/3, attempts 0/25"* ]]
    "$PYTHON" - "$json" "$command" "$waiter" <<'PY'
import json, sys
volume = json.loads(sys.argv[1])["volumes"][0]
assert volume["state"] == "locked", volume
assert volume["lock"]["pid"] == int(sys.argv[2]), volume["lock"]
assert volume["lock"]["purpose"] == "vlock", volume["lock"]
assert volume["waiters"] == [int(sys.argv[3])], volume["waiters"]
assert (volume["failures"], volume["attempts"]) == (1, 0), volume
PY
}

@test "a lock whose owner was killed with -9 shows as abandoned and counted, and vcheck leaves it for the next locker" {
    local vlock=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}
    make_product_fresh
    run "$vlock" "$VOL" -- sh -c 'exit 3'
    [ "$status" -eq 3 ]
    # No vwatch runs here, so nobody tidies the record after the kill.
    sh -c '"$1" "$2" || exit 9; exec sleep 60' _ "$vlock" "$VOL" &
    local holder=$!
    for _ in $(seq 250); do "$VCHECK" "$VOL" | grep -q "rebuild in progress" && break; sleep 0.02; done
    "$VCHECK" "$VOL" | grep -q "rebuild in progress"
    kill -KILL "$holder"
    wait "$holder" || true
    local before
    before=$(cat "$SANDBOX/locks/volumes/"*.lock)
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    [[ $output == *"$VOL: clean"* ]]
    [[ $output == *"lock abandoned: pid $holder ("*") exited without unlocking (vlock); not tidied yet"* ]]
    [[ $output != *"rebuild in progress"* ]]
    [[ $output == *"failures 2/3, attempts 0/25"* ]]
    run "$VCHECK" --json "$VOL"
    [ "$status" -eq 0 ]
    "$PYTHON" - "$output" "$holder" <<'PY'
import json, sys
volume = json.loads(sys.argv[1])["volumes"][0]
assert volume["lock"] is None, volume
abandoned = volume["abandoned_lock"]
assert abandoned["pid"] == int(sys.argv[2]) and abandoned["owners"] == [int(sys.argv[2])], abandoned
assert abandoned["since_unix"] > 0 and abandoned["since"].endswith("Z"), abandoned
assert (volume["failures"], volume["gave_up"]) == (2, False), volume
PY
    run "$VCHECK" --format=prometheus "$VOL"
    [[ $output == *"volwatch_volume_lock_abandoned{volume=\"$VOL\""*"} 1"* ]]
    [[ $output == *"volwatch_volume_failures{volume=\"$VOL\""*"} 2"* ]]
    # Read-only: the record is as the kill left it, and vlock --list agrees.
    [ "$(cat "$SANDBOX/locks/volumes/"*.lock)" == "$before" ]
    run "$vlock" --list
    [[ $output == *"abandoned: pid $holder"* ]]
    # The next locker records the very failure vcheck counted.
    run "$vlock" "$VOL" -- true
    [ "$status" -eq 0 ]
    run "$VCHECK" --json "$VOL"
    "$PYTHON" -c 'import json,sys; v=json.loads(sys.argv[1])["volumes"][0]; assert v["abandoned_lock"] is None and v["failures"] == 0, v' "$output"
}

@test "an abandoned lock that reaches max_failures shows as gave-up on a stale volume" {
    mkdir -p "$SANDBOX/locks/volumes"
    local id
    id=$("$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])')
    sh -c 'exit 0' &
    local dead=$!
    wait "$dead"
    printf 'volwatch-lock=1\nvolume=%s\nowner=%s:1:%s\ncommand=update-initramfs -u\npurpose=vrebuild\nsince=%s\nfailures=2\nattempts=2\n' \
        "$VOL" "$dead" "$(cat /proc/sys/kernel/random/boot_id)" "$(date +%s)" > "$SANDBOX/locks/volumes/$id.lock"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ $output == *"$VOL: gave-up"* ]]
    [[ $output == *"lock abandoned: pid $dead (update-initramfs -u) exited without unlocking (vrebuild); not tidied yet"* ]]
    [[ $output == *"failures 3/3, attempts 2/25; gave up"* ]]
    run "$VCHECK" --format=prometheus "$VOL"
    [[ $output == *"volwatch_volume_gave_up{volume=\"$VOL\""*"} 1"* ]]
}

@test "a lock directory the lockers would refuse is not believed" {
    make_product_fresh
    id=$("$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])')
    sleep 300 &
    holder=$!
    start=$(awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[20] }' "/proc/$holder/stat")
    mkdir -p "$SANDBOX/fake/volumes"
    printf 'volwatch-lock=1\nowner=%s:%s:%s\ncommand=fake\nsince=1\n' "$holder" "$start" \
        "$(cat /proc/sys/kernel/random/boot_id)" > "$SANDBOX/fake/volumes/$id.lock"
    # Writable by others: anyone could have written that record.
    chmod 777 "$SANDBOX/fake"
    run "$VCHECK" --lock-dir "$SANDBOX/fake" "$VOL"
    local open_status=$status open_output=$output
    chmod 755 "$SANDBOX/fake"
    ln -s "$SANDBOX/fake" "$SANDBOX/link"
    run "$VCHECK" --lock-dir "$SANDBOX/link" "$VOL"
    kill "$holder"
    [ "$open_status" -eq 0 ]
    [[ $open_output == *"$VOL: clean"* ]]
    [[ $open_output == *"lock record: $SANDBOX/fake: refusing the lock directory: writable by group or others"* ]]
    [ "$status" -eq 0 ]
    [[ $output == *"$VOL: clean"* ]]
    [[ $output == *"lock record: $SANDBOX/link: refusing a symlinked lock directory"* ]]
}

@test "a recycled pid or an earlier boot never counts as a holder" {
    make_product_fresh
    id=$("$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])')
    mkdir -p "$SANDBOX/locks/volumes"
    boot=$(cat /proc/sys/kernel/random/boot_id)
    # pid 1 exists, but not with this start time; and a record from another boot.
    printf 'volwatch-lock=1\nowner=1:999999999:%s\nowner=%s:0:00000000-0000-0000-0000-000000000000\ncommand=x\npurpose=y\nsince=1\n' \
        "$boot" "$$" > "$SANDBOX/locks/volumes/$id.lock"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    [[ "$output" == *"$VOL: clean"* ]]
}

@test "a stale volume over its failure limit is reported as gave-up" {
    id=$("$VCHECK" --json "$VOL" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["id"])')
    mkdir -p "$SANDBOX/locks/volumes"
    printf 'volwatch-lock=1\nfailures=3\nattempts=3\nlast_status=1\n' > "$SANDBOX/locks/volumes/$id.lock"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$VOL: gave-up"* ]]
    [[ "$output" == *"gave up until a success or an explicit vrebuild"* ]]
}

@test "helpers that were never synced are stale; a missing target is an error" {
    make_product_fresh
    mkdir -p "$VOL/boot" "$SANDBOX/esp"
    echo kernel > "$VOL/boot/vmlinuz"
    printf '\n[helpers]\nfiles = ["boot/vmlinuz"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp", "%s/esp2"]\n' "$VOL" "$SANDBOX" "$SANDBOX" >> "$HOST"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/esp  stale: never synced (no bootstamp)"* ]]
    [[ "$output" == *"helper $SANDBOX/esp2  error: helper target $SANDBOX/esp2 is missing or not a directory"* ]]
}

@test "--deep looks beneath shallow sources" {
    sed -i 's/depth   = "deep"/depth   = "shallow"/' "$VOL/etc/volwatch/bootcaches.toml"
    make_product_fresh
    sleep 2.1
    echo "changed in place" > "$VOL/src/modules/kernel/a.ko"
    run "$VCHECK" "$VOL"
    [ "$status" -eq 0 ]
    run "$VCHECK" --deep "$VOL"
    [ "$status" -eq 1 ]
    [[ "$output" == *"found by --deep"* ]]
}

@test "vcheck changes nothing and works for an unprivileged user" {
    make_product_fresh
    before=$(tree_state "$SANDBOX")
    run "$VCHECK" --all --deep
    run "$VCHECK" --json "$VOL"
    [ "$(tree_state "$SANDBOX")" = "$before" ]
    if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
        run setpriv --reuid=65534 --regid=65534 --clear-groups env VOLWATCH_CONFIG="$HOST" "$VCHECK" "$VOL"
        [ "$status" -eq 0 ]
        [[ "$output" == *"$VOL: clean"* ]]
        [ "$(tree_state "$SANDBOX")" = "$before" ]
    fi
}

@test "colour only on a terminal, and never with NO_COLOR" {
    run "$VCHECK" "$VOL"
    [[ "$output" != *$'\033['* ]]
    command -v script >/dev/null || skip "script(1) is not installed"
    run script -qec "$VCHECK $VOL" /dev/null
    [[ "$output" == *$'\033[33mstale'* ]]
    run env NO_COLOR=1 script -qec "$VCHECK $VOL" /dev/null
    [[ "$output" == *"stale"* ]]
    [[ "$output" != *$'\033['* ]]
}

@test "a directory an ordinary user cannot read is a cache error (77), not a false stale" {
    [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null || skip "needs root and setpriv(1)"
    local vrebuild=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
    mkdir "$VOL/src/private"
    echo secret > "$VOL/src/private/key"
    chmod 700 "$VOL/src/private"
    run "$vrebuild" "$VOL"
    [ "$status" -eq 0 ]
    run "$VCHECK" --deep "$VOL"
    [ "$status" -eq 0 ]
    nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env VOLWATCH_CONFIG="$HOST" "$@"; }
    run nobody "$VCHECK" "$VOL"
    [ "$status" -eq 77 ]
    [[ "$output" == *"pack  error: cannot read src/private: Permission denied"* ]]
    [[ "$output" != *"entries then"* ]]
    run nobody "$VCHECK" --json "$VOL"
    [ "$status" -eq 77 ]
    echo "$output" | "$PYTHON" -c '
import json, sys
doc = json.load(sys.stdin)
cache = doc["volumes"][0]["caches"][0]
assert (cache["state"], cache["reason"]) == ("error", "cannot read src/private: Permission denied"), cache
assert doc["exit_status"] == "permission-denied", doc
'
    # The top of a source unreadable too: the same answer, not "config invalid".
    chmod 700 "$VOL/src"
    run nobody "$VCHECK" "$VOL"
    [ "$status" -eq 77 ]
    [[ "$output" == *"pack  error: cannot read src: Permission denied"* ]]
}
