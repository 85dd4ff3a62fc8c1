#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status and output
# The VM suite's guest-lockup rule (tests/vm/lib.sh, vm_lockup_verdict), on
# console logs of real boots (tests/vm/fixtures): a guest kernel soft lockup
# before the guest's step began is the emulator's and its boot is retried; one
# after the step began fails the scenario; a normal boot shows neither.

bats_require_minimum_version 1.5.0

setup() {
    source "$VOLWATCH_SOURCE_DIR/tests/vm/lib.sh"
    FIXTURES=$VOLWATCH_SOURCE_DIR/tests/vm/fixtures
    DIR=$(mktemp -d "${BATS_TMPDIR:-/tmp}/volwatch-vmlib.XXXXXX")
    # The second serial port of the hung boot (firmware and GRUB output only),
    # and the same with the guest runner's lines up to its step's start.
    cp "$FIXTURES/results-before-step.log" "$DIR/before.log"
    cp "$FIXTURES/results-before-step.log" "$DIR/started.log"
    printf 'VWTEST boot-cmdline BOOT_IMAGE=/volwatch/slot-a/vmlinuz ro console=ttyS0,115200\nVWTEST step-start\n' >>"$DIR/started.log"
}

teardown() {
    rm -rf "$DIR"
}

@test "the kept soft-lockup console with no step marker: retry" {
    run -0 vm_lockup_verdict "$FIXTURES/console-soft-lockup.log" "$DIR/before.log"
    [ "$output" = retry ]
}

@test "the guest runner's boot-cmdline line alone does not mark the step's start" {
    grep -v step-start "$DIR/started.log" >"$DIR/cmdline-only.log"
    run -0 vm_lockup_verdict "$FIXTURES/console-soft-lockup.log" "$DIR/cmdline-only.log"
    [ "$output" = retry ]
}

@test "the kept soft-lockup console after the step marker: fail" {
    run -0 vm_lockup_verdict "$FIXTURES/console-soft-lockup.log" "$DIR/started.log"
    [ "$output" = fail ]
}

@test "a normal boot's console: nothing, with or without the step marker" {
    run -0 vm_lockup_verdict "$FIXTURES/console-normal.log" "$DIR/before.log"
    [ -z "$output" ]
    run -0 vm_lockup_verdict "$FIXTURES/console-normal.log" "$DIR/started.log"
    [ -z "$output" ]
}

@test "an RCU stall alone counts as a lockup, in both of the kernel's wordings" {
    grep -v 'soft lockup' "$FIXTURES/console-soft-lockup.log" >"$DIR/rcu-self.log"
    grep -q 'rcu_preempt self-detected stall' "$DIR/rcu-self.log"
    run -0 vm_lockup_verdict "$DIR/rcu-self.log" "$DIR/before.log"
    [ "$output" = retry ]
    { cat "$FIXTURES/console-normal.log"; printf '[   41.2] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\r\n'; } >"$DIR/rcu-other.log"
    run -0 vm_lockup_verdict "$DIR/rcu-other.log" "$DIR/started.log"
    [ "$output" = fail ]
}

@test "a boot that has written nothing yet: nothing" {
    run -0 vm_lockup_verdict "$DIR/no-console.log" "$DIR/no-results.log"
    [ -z "$output" ]
}

@test "the log names the first lockup line of the kept console" {
    run -0 vm_lockup_line "$FIXTURES/console-soft-lockup.log"
    [ "$output" = "[   32.861623] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [systemd-udevd:214]" ]
}

@test "the guest runner marks its step's start right before it runs the step" {
    vm_guest_runner >"$DIR/run"
    run -0 grep -A1 -x 'echo "VWTEST step-start" >&3' "$DIR/run"
    [ "${lines[1]}" = "source ./step.sh" ]
}

@test "the summary's note of retried boots" {
    run -0 vm_retried_note 0
    [ -z "$output" ]
    run -0 vm_retried_note 1
    [ "$output" = " (1 boot retried: guest kernel lockup before its step)" ]
    run -0 vm_retried_note 2
    [ "$output" = " (2 boots retried: guest kernel lockup before their step)" ]
}
