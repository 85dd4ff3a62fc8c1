#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status and output
# The example configs in examples/: every one loads (vcheck reports its
# caches, no config error), the per-cache examples agree with the combined
# Debian ones, and the ldconfig, depmod, shared-mime-info and two-ESP
# examples work for real on a minimal root built here: vcheck sees a change,
# vrebuild runs the real tools, the caches they leave are correct, and one
# vrebuild leaves the volume clean although ldconfig and depmod write beside
# their sources (also under vwatch: exactly one rebuild per change).

bats_require_minimum_version 1.5.0

load common
load vwatch

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
    stop_vwatch
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
        # systemd-boot/ is another machine (ESPs booted by systemd-boot, not
        # the GRUB-booted debian/ one): only its helper files must agree.
        if "entry" in helper:
            continue
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

# ldconfig_root: the ldconfig example on a scratch root with ld.so.conf and
# this system's multiarch directory ($libdir); defines install_lib; sets
# $libz and $lzma (the host's libz.so.1 and liblzma.so.5); skips without them.
ldconfig_root() {
    command -v ldconfig >/dev/null || skip "ldconfig is not installed"
    need_root_or_userns
    multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
    [[ -n $multiarch ]] || skip "cannot tell this system's multiarch directory"
    libz=$(ldconfig -p | awk '$1 == "libz.so.1" { print $NF; exit }')
    lzma=$(ldconfig -p | awk '$1 == "liblzma.so.5" { print $NF; exit }')
    [[ -n $libz && -n $lzma ]] || skip "libz.so.1 or liblzma.so.5 is not installed"
    use_example ldconfig
    sed -i "s|x86_64-linux-gnu|$multiarch|g" "$ROOT/etc/volwatch/bootcaches.toml"
    libdir=$ROOT/usr/lib/$multiarch
    mkdir -p "$libdir" "$ROOT/etc/ld.so.conf.d"
    echo 'include /etc/ld.so.conf.d/*.conf' >"$ROOT/etc/ld.so.conf"
    echo "/usr/lib/$multiarch" >"$ROOT/etc/ld.so.conf.d/$multiarch.conf"
}

# install_real SONAME PATH: only the library's real file (libz.so.1.2.13),
# as a hand install or an unpacked archive leaves it: ldconfig creates the
# soname link itself. install_lib also makes the link, as dpkg does.
install_real() { cp "$(readlink -f "$2")" "$libdir/"; }
install_lib() {
    local real
    real=$(readlink -f "$2")
    cp "$real" "$libdir/"
    [[ $(basename "$real") == "$1" ]] || ln -sf "$(basename "$real")" "$libdir/$1"
}

# ldconfig_wrapper: the host's ldconfig rebuilder becomes $SANDBOX/ldconfig-wrapper,
# which runs the real ldconfig -r, counts its runs in $SANDBOX/runs, and on
# the run numbered in $SANDBOX/pause-at says "paused" and waits for the test
# to create $SANDBOX/resume before it exits.
ldconfig_wrapper() {
    cat >"$SANDBOX/ldconfig-wrapper" <<'SH'
#!/bin/bash
sandbox=$1 root=$2
if [[ $(id -u) -eq 0 ]]; then ldconfig -r "$root"; else unshare -r ldconfig -r "$root"; fi || exit
echo run >>"$sandbox/runs"
if [[ $(wc -l <"$sandbox/runs") -eq $(cat "$sandbox/pause-at" 2>/dev/null || echo 0) ]]; then
    touch "$sandbox/paused"
    for ((i = 0; i < 600; i++)); do [[ -e $sandbox/resume ]] && exit 0; sleep 0.05; done
    exit 1
fi
SH
    chmod +x "$SANDBOX/ldconfig-wrapper"
    sed -i "s|^ldconfig *= .*|ldconfig = { argv = [\"$SANDBOX/ldconfig-wrapper\", \"$SANDBOX\", \"{root}\"] }|" "$HOST"
    grep -q ldconfig-wrapper "$HOST"
}

# cache_lists SONAME: the scratch root's ld.so.cache lists SONAME.
cache_lists() { as_root ldconfig -r "$ROOT" -p | grep -q "^[[:space:]]*$1 "; }

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

# runs_of CACHE: "RUNS SETTLED ACTION" of CACHE in vrebuild --json on stdin.
runs_of() {
    "$PYTHON" -c 'import json, sys
for v in json.load(sys.stdin)["volumes"]:
    for c in v["caches"]:
        if c["name"] == sys.argv[1]: print(c["runs"], c["settled"], c["action"])' "$1"
}

@test "examples: ldconfig, for real: when ldconfig creates the soname link itself, one vrebuild leaves the cache clean" {
    ldconfig_root
    ldconfig_wrapper
    install_real libz.so.1 "$libz"
    [ ! -e "$libdir/libz.so.1" ]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"ld.so.cache: the sources changed during the run (usr/lib/$multiarch/libz.so.1 is "*"running it once more to settle"* ]]
    [[ "$output" == *"ld.so.cache: cache updated in "*" (two runs)"* ]]
    [ "$(wc -l <"$SANDBOX/runs")" -eq 2 ]
    [ -L "$libdir/libz.so.1" ]
    cache_lists libz.so.1
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    # A library installed with its link, as dpkg does: one run is enough.
    install_lib liblzma.so.5 "$lzma"
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *"once more"* && "$output" != *"two runs"* ]]
    [ "$(wc -l <"$SANDBOX/runs")" -eq 3 ]
    cache_lists liblzma.so.5
    # --json says how often each rebuilder ran: a settle run shows as 2.
    rm "$libdir/libz.so.1"   # ldconfig makes it again: a settle run
    "$VREBUILD" --json "$ROOT" 2>/dev/null >"$SANDBOX/out.json"
    [ "$(runs_of ld.so.cache <"$SANDBOX/out.json")" = "2 True rebuilt" ]
    "$VREBUILD" --json --force "$ROOT" 2>/dev/null >"$SANDBOX/out.json"
    [ "$(runs_of ld.so.cache <"$SANDBOX/out.json")" = "1 True rebuilt" ]
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 0 ]
}

# counting_vrebuild: vwatch launches the real vrebuild through a script that
# counts each launch in rebuilds.log (rebuild_count, vwatch.bash); VOL is the
# scratch root for vwatch.bash's waits.
counting_vrebuild() {
    cat >"$SANDBOX/counting-vrebuild" <<SH
#!/bin/bash
echo "start \$(date +%s.%N) \$*" >>"$SANDBOX/rebuilds.log"
exec "$VREBUILD" "\$@"
SH
    chmod +x "$SANDBOX/counting-vrebuild"
    : >"$SANDBOX/rebuilds.log"
    export VOLWATCH_VREBUILD=$SANDBOX/counting-vrebuild
    VOL=$ROOT
}

# third_library: a library of this system other than libz and liblzma, for a
# second change; its soname in $third_soname, its path in $third.
third_library() {
    local soname
    for soname in libbz2.so.1.0 libzstd.so.1 libacl.so.1 libattr.so.1 libcap.so.2 libmd.so.0 libcrypt.so.1; do
        third=$(ldconfig -p | awk -v s="$soname" '$1 == s { print $NF; exit }')
        if [[ -n $third ]]; then third_soname=$soname; return 0; fi
    done
    skip "none of the libraries for a second change is installed"
}

@test "examples: ldconfig, for real: a library installed during the first run is included by the settle run" {
    ldconfig_root
    ldconfig_wrapper
    install_real libz.so.1 "$libz"
    echo 1 >"$SANDBOX/pause-at"
    "$VREBUILD" "$ROOT" >"$SANDBOX/vrebuild.out" 2>&1 &
    local pid=$! rc=0
    wait_for "[[ -e $SANDBOX/paused ]]" 60
    install_lib liblzma.so.5 "$lzma"   # by another process, after run 1's ldconfig
    touch "$SANDBOX/resume"
    wait "$pid" || rc=$?
    cat "$SANDBOX/vrebuild.out"
    [ "$rc" -eq 0 ]
    [ "$(wc -l <"$SANDBOX/runs")" -eq 2 ]
    cache_lists liblzma.so.5
    cache_lists libz.so.1
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "examples: ldconfig, for real: a library installed during the settle run leaves the cache stale" {
    ldconfig_root
    third_library
    ldconfig_wrapper
    install_real libz.so.1 "$libz"
    echo 2 >"$SANDBOX/pause-at"
    "$VREBUILD" --json "$ROOT" >"$SANDBOX/out.json" 2>"$SANDBOX/vrebuild.out" &
    local pid=$! rc=0
    wait_for "[[ -e $SANDBOX/paused ]]" 60
    install_lib "$third_soname" "$third"   # after run 2's ldconfig: not in the cache
    touch "$SANDBOX/resume"
    wait "$pid" || rc=$?
    cat "$SANDBOX/vrebuild.out"
    [ "$rc" -eq 0 ]
    [ "$(runs_of ld.so.cache <"$SANDBOX/out.json")" = "2 False rebuilt" ]
    grep -q "ld.so.cache: the sources changed again during the second run (usr/lib/$multiarch/$third_soname" "$SANDBOX/vrebuild.out"
    [ "$(wc -l <"$SANDBOX/runs")" -eq 2 ]
    run -1 cache_lists "$third_soname"
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"ld.so.cache"*"stale: usr/lib/$multiarch/$third_soname"* ]]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(wc -l <"$SANDBOX/runs")" -eq 3 ]
    cache_lists "$third_soname"
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 0 ]
}

@test "examples: ldconfig with vwatch, for real: ldconfig's own links cost no second rebuild; a change during the settle run costs exactly one" {
    ldconfig_root
    third_library
    ldconfig_wrapper
    counting_vrebuild
    run "$VREBUILD" "$ROOT"   # an empty library directory: one quiet run
    [ "$status" -eq 0 ]
    [ "$(wc -l <"$SANDBOX/runs")" -eq 1 ]
    start_vwatch --settle 200ms --startup-delay 0
    wait_until_clean 1
    [ "$(rebuild_count)" -eq 0 ]

    install_real libz.so.1 "$libz"
    wait_for "[[ \$(rebuild_count) -eq 1 ]]" 20
    wait_for_log "$VOL: clean" 30 2
    still_exactly_rebuilds 1
    [ "$(wc -l <"$SANDBOX/runs")" -eq 3 ]
    cache_lists libz.so.1

    echo 5 >"$SANDBOX/pause-at"   # the settle run of the next rebuild
    install_real liblzma.so.5 "$lzma"
    wait_for "[[ -e $SANDBOX/paused ]]" 30
    install_lib "$third_soname" "$third"
    touch "$SANDBOX/resume"
    wait_for "[[ \$(rebuild_count) -eq 3 ]]" 30
    wait_for_log "$VOL: clean" 30 3
    still_exactly_rebuilds 3
    [ "$(wc -l <"$SANDBOX/runs")" -eq 6 ]
    cache_lists "$third_soname"
    cache_lists liblzma.so.5
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 0 ]
}

# still_exactly_rebuilds N: nothing more starts for several settle times (a
# negative check cannot poll), then the count is N.
still_exactly_rebuilds() {
    sleep 2
    [ "$(rebuild_count)" -eq "$1" ]
}

# depmod_root: the depmod example on a scratch root with Debian's /lib link
# and a module tree for its kernel version; module NAME makes a module.
depmod_root() {
    command -v depmod >/dev/null || skip "depmod is not installed (apt-get install kmod)"
    command -v gcc >/dev/null || skip "gcc is needed to make a test module"
    use_example depmod
    version=6.1.0-18-amd64
    modules=$ROOT/usr/lib/modules/$version
    mkdir -p "$modules/kernel/drivers" "$ROOT/etc/depmod.d" "$ROOT/usr/lib/depmod.d"
    ln -s usr/lib "$ROOT/lib"
    : >"$modules/modules.order"
    : >"$modules/modules.builtin"
    : >"$modules/modules.builtin.modinfo"
}

# module NAME: a loadable-module object (ELF with a .modinfo section) that
# depmod indexes, with the alias volwatch:NAME.
module() {
    printf '__attribute__((section(".modinfo"), used)) static const char info[] = "license=GPL\\0alias=volwatch:%s\\0name=%s";\n' \
        "$1" "$1" >"$SANDBOX/$1.c"
    gcc -c -o "$modules/kernel/drivers/$1.ko" "$SANDBOX/$1.c"
}

@test "examples: depmod, for real: its own modules.* files are declared outputs, so one vrebuild leaves the cache clean" {
    depmod_root
    module vwfirst
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 1 ]
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"depmod-$version: cache updated"* ]]
    [[ "$output" != *"once more"* ]]
    grep -q '^alias volwatch:vwfirst vwfirst$' "$modules/modules.alias"
    [ -s "$modules/modules.alias.bin" ]
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    # depmod rewrites every modules.* file on each run: still clean.
    run "$VREBUILD" --force "$ROOT"
    [ "$status" -eq 0 ]
    run "$VCHECK" --deep "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]

    module vwsecond
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"depmod-$version"*"stale: usr/lib/modules/$version/kernel/drivers/vwsecond.ko"* ]]
    run "$VREBUILD" "$ROOT"
    [ "$status" -eq 0 ]
    grep -q '^alias volwatch:vwsecond vwsecond$' "$modules/modules.alias"
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 0 ]
    # An input beside the outputs is not one of them.
    echo kernel/drivers/vwfirst.ko >"$modules/modules.order"
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"modules.order"* ]]
}

@test "examples: depmod, for real: without its outputs declared, the cache cannot converge, and vrebuild says why" {
    depmod_root
    module vwfirst
    # The example without outputs: depmod rewrites its files in every run.
    "$PYTHON" - "$ROOT/etc/volwatch/bootcaches.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text, n = re.subn(r"\noutputs = \[.*?\]\n", "\n", text, flags=re.S)
assert n == 1
open(path, "w").write(text)
PY
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"running it once more to settle"* ]]
    [[ "$output" == *"the sources changed again during the second run"*"declare them in the cache's outputs"* ]]
    run "$VCHECK" "$ROOT"
    [ "$status" -eq 1 ]
}

@test "examples: depmod with vwatch, for real: a new module costs exactly one rebuild" {
    depmod_root
    module vwfirst
    counting_vrebuild
    start_vwatch --settle 200ms --startup-delay 0
    wait_for "[[ \$(rebuild_count) -eq 1 ]]" 20
    wait_until_clean 1
    still_exactly_rebuilds 1
    module vwsecond
    wait_for "[[ \$(rebuild_count) -eq 2 ]]" 20
    wait_until_clean 2
    still_exactly_rebuilds 2
    grep -q '^alias volwatch:vwsecond vwsecond$' "$modules/modules.alias"
}

@test "examples: systemd-boot, for real: vrebuild writes a boot entry naming the new slot on both targets" {
    [[ $(id -u) -eq 0 ]] || skip "needs root: a [helpers.entry] target must be the root of a file system (a tmpfs mounted on it)"
    cp "$EXAMPLES/systemd-boot/bootcaches.toml" "$ROOT/etc/volwatch/bootcaches.toml"
    host_config "$EXAMPLES/systemd-boot/host.toml"
    # Mounted tmpfs directories instead of the example's devices; the rest as
    # written. remove_sandbox unmounts them.
    sed -i -e "s|^volume  = \"/\"|volume  = \"$ROOT\"|" -e '/^fstype /d' \
        -e "s|\"UUID=1234-ABCD\", \"UUID=5678-EF01\"|\"$SANDBOX/efi\", \"$SANDBOX/efi2\"|" "$HOST"
    mkdir -p "$ROOT/boot" "$SANDBOX/efi" "$SANDBOX/efi2"
    mount -t tmpfs tmpfs "$SANDBOX/efi"
    mount -t tmpfs tmpfs "$SANDBOX/efi2"
    head -c 300000 /dev/urandom >"$ROOT/boot/vmlinuz-6.1.0-18-amd64"
    head -c 900000 /dev/urandom >"$ROOT/boot/initrd.img-6.1.0-18-amd64"
    ln -s boot/vmlinuz-6.1.0-18-amd64 "$ROOT/vmlinuz"
    ln -s boot/initrd.img-6.1.0-18-amd64 "$ROOT/initrd.img"
    run "$VREBUILD" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
    local esp
    for esp in "$SANDBOX/efi" "$SANDBOX/efi2"; do
        [ "$(ls "$esp/loader/entries")" = "debian-1+3.conf" ]
        grep -qx "linux /volwatch/slot-a/vmlinuz" "$esp/loader/entries/debian-1+3.conf"
        grep -qx "initrd /volwatch/slot-a/initrd.img" "$esp/loader/entries/debian-1+3.conf"
        grep -qx "options root=ZFS=rpool/ROOT/pve-1 boot=zfs ro quiet volwatch.generation=1" "$esp/loader/entries/debian-1+3.conf"
        cmp "$ROOT/boot/vmlinuz-6.1.0-18-amd64" "$esp/volwatch/slot-a/vmlinuz"
    done
    run "$VCHECK" "$ROOT"
    echo "$output"
    [ "$status" -eq 0 ]
}
