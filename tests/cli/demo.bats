#!/usr/bin/env bats
# The README's first command: scripts/demo.sh runs the main job on a sandbox
# volume (here with the programs under test, installing and building nothing)
# and each step has the outcome it shows.

load common

@test "scripts/demo.sh: stale, rebuilt with two helpers, rebuilt by vwatch, and a shutdown through the gate" {
    run env VOLWATCH_DEMO_BIN="$(dirname "$VCHECK")" TMPDIR="$BATS_TEST_TMPDIR" bash "$VOLWATCH_SOURCE_DIR/scripts/demo.sh"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"initramfs  stale: product missing (boot/initrd.img)"* ]]
    [[ $output == *"helper "*"/esp2: helper updated: copied 2 files"*"generation 1"* ]]
    [[ $output == *"initramfs  stale: usr/lib/modules/6.1.0-18/kernel/drivers/igc.ko is "*"newer than the last build of boot/initrd.img"* ]]
    [[ $output == *'"state": "stale"'* ]]
    [[ $output == *"volwatch_cache_stale{"*"cache=\"initramfs\"} 1"* ]]
    [[ $output == *"cache updated by vrebuild"* ]]
    [[ $output == *"shutdown delay begins"*"reboot lock granted to pid "* ]]
    [[ $output == *"reboot in progress"* ]]
    [[ $output != *$'\033'* ]]  # no colour when not on a terminal
    # The sandbox is removed.
    [ -z "$(ls -A "$BATS_TEST_TMPDIR")" ]
}
