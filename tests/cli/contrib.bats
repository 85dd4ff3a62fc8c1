#!/usr/bin/env bats
# The integration files in contrib/ are valid for the tools that read them.

load common

@test "the systemd units pass systemd-analyze verify" {
    command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
    dir=$(mktemp -d)
    for unit in "$VOLWATCH_SOURCE_DIR"/contrib/systemd/*.service; do
        # Point the units at the programs under test, which verify checks exist.
        sed -e "s|/usr/sbin/vrebootgate|$VOLWATCH_BUILD_DIR/tools/vrebootgate|g" \
            -e "s|/usr/sbin/vwatch|$VOLWATCH_BUILD_DIR/tools/vwatch|g" "$unit" > "$dir/$(basename "$unit")"
    done
    run systemd-analyze verify --man=no "$dir"/*.service
    rm -rf "$dir"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *"Unknown"* ]]
}

@test "the gate unit stops before local file systems are unmounted, with a stop timeout above the wait bound" {
    unit=$VOLWATCH_SOURCE_DIR/contrib/systemd/volwatch-rebootgate.service
    grep -qx 'After=local-fs.target sysinit.target vwatch.service' "$unit"
    wait=$(sed -n 's/^ExecStop=.*--wait=\([0-9]*\)m.*/\1/p' "$unit")
    timeout=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)min/\1/p' "$unit")
    [ -n "$wait" ]
    [ -n "$timeout" ]
    [ "$timeout" -gt "$wait" ]
}

@test "the rc.shutdown snippet runs the gate and never fails the shutdown" {
    bin=$(mktemp -d)
    printf '#!/bin/sh\necho "gate $*"\nexit 75\n' > "$bin/vrebootgate"
    chmod +x "$bin/vrebootgate"
    sed "s|/usr/sbin/vrebootgate|$bin/vrebootgate|" "$VOLWATCH_SOURCE_DIR/contrib/sysvinit/volwatch-rc.shutdown" > "$bin/snippet"
    run sh "$bin/snippet" stop
    rm -rf "$bin"
    [ "$status" -eq 0 ]
    [[ "$output" == *"gate --wait=10m --owner 1"* ]]
    [[ "$output" == *"shutdown gate ended with status 75"* ]]
}

@test "the launchd plists are well-formed property lists" {
    for plist in "$VOLWATCH_SOURCE_DIR"/contrib/launchd/*.plist; do
        "$PYTHON" -c 'import plistlib, sys; d = plistlib.load(open(sys.argv[1], "rb")); assert d["Label"] and d["ProgramArguments"]' "$plist"
    done
}
