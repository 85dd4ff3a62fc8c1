#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status and output
# The VM suite's guest-lockup rule (tests/vm/lib.sh, vm_lockup_verdict), on
# console logs of real boots (tests/vm/fixtures): a guest kernel soft lockup
# before the guest's step began is the emulator's and its boot is retried; one
# after the step began fails the scenario; a normal boot shows neither. Then
# vm_boot itself, with a stand-in QEMU (fake-qemu/) that writes those logs.

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
    PATH=$VOLWATCH_SOURCE_DIR/tests/cli/fake-qemu:$PATH
    export FAKE_QEMU_PLAN=$DIR/plan
    export VM_RETRY_LOG=$DIR/retried
    echo 'vw_done' >"$DIR/step.sh"
}

# vm_boot copies the firmware's variable store for each boot.
need_ovmf() {
    [[ -f /usr/share/OVMF/OVMF_VARS_4M.fd ]] || skip "no /usr/share/OVMF/OVMF_VARS_4M.fd (scripts/deps.sh vm installs it)"
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

@test "vm_boot: a lockup before the step kills that boot, keeps it, and boots once more" {
    need_ovmf
    printf 'lockup-before\ndone\n' >"$FAKE_QEMU_PLAN"
    run -0 vm_boot "$DIR/run" "$DIR/step.sh" 1 30
    [[ $output == *"vm: boot 1: guest kernel lockup before the step began (emulator), retrying once; "*"'[   32.861623] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [systemd-udevd:214]'; console kept in $DIR/run/boot-1/console.log"* ]]
    [[ $output == *"vm: boot 2 (step.sh, disk 1): "*" s, qemu exit 0"* ]]
    [ "$(cat "$VM_RETRY_LOG")" = "$DIR/run/boot-1" ]
    grep -q 'soft lockup' "$DIR/run/boot-1/console.log"
    cmp "$DIR/run/boot-1/cfg/step.sh" "$DIR/run/boot-2/cfg/step.sh"
    run -1 pgrep -f "file=$DIR/run/boot-1/"
}

@test "vm_boot: a second lockup before the step fails the scenario, naming the lockup" {
    need_ovmf
    printf 'lockup-before\nlockup-before\n' >"$FAKE_QEMU_PLAN"
    run -1 vm_boot "$DIR/run" "$DIR/step.sh" 1 30
    [[ $output == *"vm: FAIL: boot 2: guest kernel lockup before the step began, on the retry too (emulator): '[   32.861623] watchdog: BUG: soft lockup"* ]]
    [ "$(cat "$VM_RETRY_LOG")" = "$DIR/run/boot-1" ]
    [ ! -e "$DIR/run/boot-3" ]
    run -1 pgrep -f "file=$DIR/run/boot-2/"
}

@test "vm_boot: a lockup after the step began fails at once, not retried" {
    need_ovmf
    printf 'lockup-after\ndone\n' >"$FAKE_QEMU_PLAN"
    run -1 vm_boot "$DIR/run" "$DIR/step.sh" 1 30
    [[ $output == *"vm: FAIL: boot 1: guest kernel lockup after the step began (not retried: it may be ours): '[   32.861623] watchdog: BUG: soft lockup"* ]]
    [[ $output != *"timed out"* ]]
    [ ! -e "$DIR/run/boot-2" ]
    [ ! -e "$VM_RETRY_LOG" ]
    run -1 pgrep -f "file=$DIR/run/boot-1/"
}

@test "vm_boot with VM_UNTIL (the power-cut boots): retried too, and left running once the guest reports" {
    need_ovmf
    printf 'lockup-before\nloop\n' >"$FAKE_QEMU_PLAN"
    VM_UNTIL='^VWTEST sync-start 1$' vm_boot "$DIR/run" "$DIR/step.sh" 2 30 2>"$DIR/log"
    grep -q 'vm: boot 1: guest kernel lockup before the step began (emulator), retrying once' "$DIR/log"
    [ "$VM_LAST" = "$DIR/run/boot-2" ]
    run -1 pgrep -f "file=$DIR/run/boot-1/"
    pgrep -f "file=$DIR/run/boot-2/"
    vm_kill_qemu
    run -1 pgrep -f "file=$DIR/run/boot-2/"
}
