# Shared set-up for the end-to-end tests: a throwaway sandbox volume with its
# own host config and lock directory, and the programs under test from CTest.

: "${VOLWATCH_BUILD_DIR:?run through ctest, or set VOLWATCH_BUILD_DIR}"
# Debian's interpreter: it has python3-jsonschema, and starts in 30 ms where
# a version manager's shim may take ten times that.
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
export PYTHON
VCHECK=${VCHECK:-$VOLWATCH_BUILD_DIR/tools/vcheck}

# make_sandbox [BASE]: creates $SANDBOX (under BASE, default $BATS_TMPDIR)
# with vol/ (a volume with one deep cache "pack" over src/ producing
# out/pack.tgz), locks/ and host.toml.
make_sandbox() {
    SANDBOX=$(mktemp -d "${1:-${BATS_TMPDIR:-/tmp}}/volwatch-cli.XXXXXX")
    chmod 755 "$SANDBOX"
    VOL=$SANDBOX/vol
    HOST=$SANDBOX/host.toml
    mkdir -p "$VOL/etc/volwatch" "$VOL/src/modules/kernel" "$VOL/out" "$SANDBOX/locks"
    echo "module a" > "$VOL/src/modules/kernel/a.ko"
    cat > "$HOST" <<TOML
lock_dir = "$SANDBOX/locks"
discover = false
volumes = ["$VOL"]
max_failures = 3

[rebuilders]
pack = { argv = ["tar", "-C", "{root}", "-czf", "{product}", "src"], timeout = "1m" }
TOML
    cat > "$VOL/etc/volwatch/bootcaches.toml" <<TOML
version = 1

[[cache]]
name    = "pack"
sources = ["src"]
product = "out/pack.tgz"
depth   = "deep"
rebuild = "pack"
TOML
    export VOLWATCH_CONFIG=$HOST
}

remove_sandbox() {
    unmount_sandbox
    [[ -n "${SANDBOX:-}" && -d "$SANDBOX" ]] && rm -rf "$SANDBOX"
    return 0
}

# unmount_sandbox: unmounts whatever a test left mounted beneath $SANDBOX,
# deepest first (lazily when busy), so that no mount outlives a failed test
# and removing the sandbox never reaches into one.
unmount_sandbox() {
    [[ -n "${SANDBOX:-}" ]] || return 0
    local m
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v dir="$SANDBOX/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

# make_product_fresh: writes the product with an mtime after every source change.
make_product_fresh() {
    tar -C "$VOL" -czf "$VOL/out/pack.tgz" src
    touch -d "@$(( $(date +%s) + 2 ))" "$VOL/out/pack.tgz"
}

# tree_state DIR: a fingerprint of every path, size, mode and mtime beneath DIR.
tree_state() {
    find "$1" -printf '%p %s %m %T@ %C@\n' | sort | sha256sum
}
