#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status and output
# The example configs in examples/: every one loads (vcheck reports its
# caches, no config error), the per-cache examples agree with the combined
# Debian ones, and the ldconfig, shared-mime-info and two-ESP examples work
# for real on a minimal root built here: vcheck sees a change, vrebuild runs
# the real tools, and the caches they leave are correct.

bats_require_minimum_version 1.5.0

load common

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
EXAMPLES=$VOLWATCH_SOURCE_DIR/examples

setup() {
    SANDBOX=$(mktemp -d "${BATS_TMPDIR:-/tmp}/volwatch-examples.XXXXXX")
    chmod 755 "$SANDBOX"
    ROOT=$SANDBOX/root
    HOST=$SANDBOX/host.toml
    mkdir -p "$ROOT/etc/volwatch" "$SANDBOX/locks"
    export VOLWATCH_CONFIG=$HOST
}

teardown() {
    remove_sandbox
}

# host_config SNIPPET...: the test's host config (its lock directory, the
# scratch root as the only volume) followed by the example snippets.
host_config() {
    printf 'lock_dir = "%s"\ndiscover = false\nvolumes = ["%s"]\n\n' "$SANDBOX/locks" "$ROOT" >"$HOST"
    cat "$@" >>"$HOST"
}

# use_example DIR: DIR's volume config on the scratch root, its snippet in the host config.
use_example() {
    cp "$EXAMPLES/$1/bootcaches.toml" "$ROOT/etc/volwatch/bootcaches.toml"
    host_config "$EXAMPLES/$1/host.toml"
}

# check_loads: vcheck --json on the scratch root reports the volume without a
# config error, with as many caches as its volume config has.
check_loads() {
    run --separate-stderr "$VCHECK" --json "$ROOT"
    echo "$output" "$stderr"
    [ "$status" -eq 0 ] || [ "$status" -eq 1 ]
    printf '%s\n' "$output" | "$PYTHON" -c '
import json, sys, tomllib
doc = json.load(sys.stdin)
config = tomllib.load(open(sys.argv[1], "rb"))
v = doc["volumes"][0]
assert v["state"] != "config-error", v
assert [c["name"] for c in v["caches"]] == [c["name"] for c in config.get("cache", [])], v
assert all(c["state"] != "error" for c in v["caches"]), v
' "$ROOT/etc/volwatch/bootcaches.toml"
}

# as_root CMD...: CMD as root; unprivileged, in a user namespace where the
# caller is root (ldconfig -r needs chroot).
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else unshare -r "$@"; fi
}

need_root_or_userns() {
    [[ $(id -u) -eq 0 ]] || unshare -r true 2>/dev/null ||
        skip "ldconfig -r needs chroot: run as root, or allow unprivileged user namespaces"
}

@test "examples: every volume config loads with its host snippet" {
    local dir n=0
    for dir in "$EXAMPLES"/*/; do
        dir=$(basename "$dir")
        [[ -f "$EXAMPLES/$dir/host.toml" ]] || continue
        use_example "$dir"
        check_loads
        n=$((n + 1))
    done
    [ "$n" -ge 7 ]
}

@test "examples: the combined Debian host config and volume config load together" {
    cp "$EXAMPLES/debian/bootcaches.toml" "$ROOT/etc/volwatch/bootcaches.toml"
    # The real file, with the test's lock directory and the scratch root as volume.
    sed -e "s|^lock_dir .*|lock_dir = \"$SANDBOX/locks\"|" \
        -e "s|^discover .*|discover = false\nvolumes = [\"$ROOT\"]|" \
        -e "s|^volume  = \"/\"|volume  = \"$ROOT\"|" \
        -e "s|\"/boot/efi\", \"/boot/efi2\"|\"$SANDBOX/efi\", \"$SANDBOX/efi2\"|" \
        "$EXAMPLES/debian/volwatch.toml" >"$HOST"
    grep -q "^volumes = \\[\"$ROOT\"\\]" "$HOST"
    check_loads
    run --separate-stderr "$VCHECK" --json "$ROOT"
    printf '%s\n' "$output" | "$PYTHON" -c '
import json, sys
v = json.load(sys.stdin)["volumes"][0]
assert sorted(h["target"] for h in v["helpers"]) == sorted(sys.argv[1:]), v["helpers"]
' "$SANDBOX/efi" "$SANDBOX/efi2"
}

@test "examples: the per-cache examples and the combined Debian ones agree" {
    "$PYTHON" - "$EXAMPLES" <<'PY'
import pathlib, sys, tomllib
root = pathlib.Path(sys.argv[1])
host = tomllib.loads((root / "debian/volwatch.toml").read_text())
volume = tomllib.loads((root / "debian/bootcaches.toml").read_text())
caches = {c["name"]: c for c in volume["cache"]}
seen = set()
for snippet in sorted(root.glob("*/host.toml")):
    part = tomllib.loads(snippet.read_text())
    for name, rebuilder in part.get("rebuilders", {}).items():
        assert host["rebuilders"].get(name) == rebuilder, f"{snippet}: rebuilder {name} differs from debian/volwatch.toml"
        seen.add(name)
    for helper in part.get("helpers", []):
        assert helper in host["helpers"], f"{snippet}: {helper} is not in debian/volwatch.toml"
    example = tomllib.loads((snippet.parent / "bootcaches.toml").read_text())
    assert example["version"] == 1
    for cache in example.get("cache", []):
        assert caches.get(cache["name"]) == cache, f"{snippet.parent.name}: cache {cache['name']} differs from debian/bootcaches.toml"
    if "helpers" in example:
        # depends names caches, so only a config that has them (debian) may carry it.
        assert example["helpers"]["files"] == volume["helpers"]["files"], f"{snippet.parent.name}: helper files differ"
        assert set(example["helpers"].get("depends", {})) <= set(volume["helpers"].get("depends", {})), snippet.parent.name
assert seen == set(host["rebuilders"]), f"rebuilders without a per-cache example: {set(host['rebuilders']) - seen}"
assert {c["rebuild"] for c in volume["cache"]} <= seen
PY
}

@test "examples: ldconfig, for real: a new library makes the cache stale, vrebuild runs ldconfig -r, the cache lists it" {
    command -v ldconfig >/dev/null || skip "ldconfig is not installed"
    need_root_or_userns
    local multiarch libz lzma
    multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
    [[ -n $multiarch ]] || skip "cannot tell this system's multiarch directory"
    libz=$(ldconfig -p | awk '$1 == "libz.so.1" { print $NF; exit }')
    lzma=$(ldconfig -p | awk '$1 == "liblzma.so.5" { print $NF; exit }')
    [[ -n $libz && -n $lzma ]] || skip "libz.so.1 or liblzma.so.5 is not installed"
    use_example ldconfig
    # The example names amd64's directory; elsewhere, this system's.
    sed -i "s|x86_64-linux-gnu|$multiarch|g" "$ROOT/etc/volwatch/bootcaches.toml"
    local libdir=$ROOT/usr/lib/$multiarch
    mkdir -p "$libdir" "$ROOT/etc/ld.so.conf.d"
    echo 'include /etc/ld.so.conf.d/*.conf' >"$ROOT/etc/ld.so.conf"
    echo "/usr/lib/$multiarch" >"$ROOT/etc/ld.so.conf.d/$multiarch.conf"
    # install_lib SONAME PATH: the real file and its soname link, as dpkg installs them.
    install_lib() {
        local real
        real=$(readlink -f "$2")
        cp "$real" "$libdir/"
        [[ $(basename "$real") == "$1" ]] || ln -sf "$(basename "$real")" "$libdir/$1"
    }
    install_lib libz.so.1 "$libz"
    if [[ $(id -u) -ne 0 ]]; then
        sed -i 's|argv = \["ldconfig"|argv = ["unshare", "-r", "ldconfig"|' "$HOST"
    fi

    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"ld.so.cache"*"product missing (etc/ld.so.cache)"* ]]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"ld.so.cache: cache updated"* ]]
    run as_root ldconfig -r "$ROOT" -p
    echo "$output"
    [[ "$output" == *"libz.so.1 "*"=> /usr/lib/$multiarch/libz.so.1"* ]]
    [[ "$output" != *liblzma* ]]
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]

    install_lib liblzma.so.5 "$lzma"
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"ld.so.cache"*"stale: usr/lib/$multiarch/liblzma.so.5"* ]]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    run as_root ldconfig -r "$ROOT" -p
    echo "$output"
    [[ "$output" == *"liblzma.so.5 "*"=> /usr/lib/$multiarch/liblzma.so.5"* ]]
    [[ "$output" == *"libz.so.1 "* ]]
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "examples: shared-mime-info, for real: a new MIME package makes the cache stale, vrebuild compiles it in" {
    command -v update-mime-database >/dev/null || skip "update-mime-database is not installed (apt-get install shared-mime-info)"
    local package=/usr/share/mime/packages/freedesktop.org.xml
    [[ -f $package ]] || skip "$package is missing"
    use_example shared-mime-info
    local mime=$ROOT/usr/share/mime
    mkdir -p "$mime/packages"
    cp "$package" "$mime/packages/"

    run "$VCHECK" "$ROOT"
    [ "$status" -eq 1 ]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [ -s "$mime/mime.cache" ]
    grep -aq 'application/x-bzip' "$mime/mime.cache"
    run -1 grep -aq 'application/x-volwatch-example' "$mime/mime.cache"
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]

    cat >"$mime/packages/volwatch-example.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">
  <mime-type type="application/x-volwatch-example">
    <comment>volwatch example document</comment>
    <glob pattern="*.vwexample"/>
  </mime-type>
</mime-info>
XML
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"mime"*"stale: usr/share/mime/packages/volwatch-example.xml"* ]]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    grep -aq 'application/x-volwatch-example' "$mime/mime.cache"
    grep -q '^50:application/x-volwatch-example:\*\.vwexample$' "$mime/globs2"
    [ -f "$mime/application/x-volwatch-example.xml" ]
    grep -aq 'application/x-bzip' "$mime/mime.cache"
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 0 ]
}

@test "examples: two ESPs, for real: vrebuild copies the kernel and initramfs to both targets" {
    cp "$EXAMPLES/two-esp/bootcaches.toml" "$ROOT/etc/volwatch/bootcaches.toml"
    host_config "$EXAMPLES/two-esp/host.toml"
    sed -i -e "s|^volume  = \"/\"|volume  = \"$ROOT\"|" \
        -e "s|\"/boot/efi\", \"/boot/efi2\"|\"$SANDBOX/efi\", \"$SANDBOX/efi2\"|" "$HOST"
    mkdir -p "$ROOT/boot" "$SANDBOX/efi" "$SANDBOX/efi2"
    head -c 300000 /dev/urandom >"$ROOT/boot/vmlinuz-6.1.0-18-amd64"
    head -c 900000 /dev/urandom >"$ROOT/boot/initrd.img-6.1.0-18-amd64"
    ln -s boot/vmlinuz-6.1.0-18-amd64 "$ROOT/vmlinuz"
    ln -s boot/initrd.img-6.1.0-18-amd64 "$ROOT/initrd.img"

    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    local esp slot
    for esp in "$SANDBOX/efi" "$SANDBOX/efi2"; do
        slot=$(sed -n 's/^slot=//p' "$esp/volwatch/current")
        cmp "$ROOT/boot/vmlinuz-6.1.0-18-amd64" "$esp/volwatch/slot-$slot/vmlinuz"
        cmp "$ROOT/boot/initrd.img-6.1.0-18-amd64" "$esp/volwatch/slot-$slot/initrd.img"
    done
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    # A new initramfs (the link now points at it) makes both helpers stale.
    head -c 900000 /dev/urandom >"$ROOT/boot/initrd.img-6.1.0-19-amd64"
    ln -sfn boot/initrd.img-6.1.0-19-amd64 "$ROOT/initrd.img"
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"helper $SANDBOX/efi  stale"* && "$output" == *"helper $SANDBOX/efi2  stale"* ]]
}
