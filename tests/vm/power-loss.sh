#!/usr/bin/env bash
# Scenario "power loss": QEMU is killed with SIGKILL (the VM's power cord) at
# random instants while the guest runs `vrebuild / --force --helpers-only` in
# a loop, copying the real kernel and initramfs onto both vfat ESPs. After
# every cut, the machine boots from each ESP: GRUB finds a pointer, the kernel
# of a complete set starts (its generation on the command line, never the
# fallback entry), the initramfs unpacks (the kernel logs no unpacking error
# and the guest's test unit runs from the real root); then `vrebuild /`
# completes the update and `vcheck --all` is clean.
# VOLWATCH_VM_CUTS (default 2) cuts, VOLWATCH_VM_SEED the seed (printed),
# VOLWATCH_VM_CUT_WINDOW (default 20) the seconds after the first sync starts
# within which the cut falls.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cuts=${VOLWATCH_VM_CUTS:-2}
seed=${VOLWATCH_VM_SEED:-$(date +%s)}
window=${VOLWATCH_VM_CUT_WINDOW:-20}
RANDOM=$seed
vm_log "power loss: $cuts cuts, seed $seed (reproduce with VOLWATCH_VM_SEED=$seed), window $window s"
vm_new_synced_run power-loss

# The loop the power cord interrupts.
cat >"$VM_RUN/syncloop.sh" <<'STEP'
n=0
while :; do
    n=$((n + 1))
    echo "VWTEST sync-start $n" >&3
    vrebuild / --force --helpers-only >/run/vrebuild.out 2>&1
    echo "VWTEST sync-end $n $?" >&3
done
STEP
# After a cut: what the boot proves (check-only boots power off with --force,
# so the shutdown gate does not repair the ESPs before the other disk is tried).
cat >"$VM_RUN/check.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation) $(vw_cmdline esp)"
vw_report unpack-errors "$(journalctl -b -k -o cat --no-pager | grep -ci 'initramfs unpacking failed')"
vw_report esp1 "$(vw_pointer /boot/efi)"
vw_report esp2 "$(vw_pointer /boot/efi2)"
echo "VWTEST done" >&3
sync
systemctl poweroff --force
STEP
cat >"$VM_RUN/repair.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation) $(vw_cmdline esp)"
vw_report unpack-errors "$(journalctl -b -k -o cat --no-pager | grep -ci 'initramfs unpacking failed')"
rc=0; vrebuild / >/run/vrebuild.out 2>&1 || rc=$?
sed 's/^/VWLOG vrebuild: /' /run/vrebuild.out >&3
vw_report vrebuild-exit "$rc"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
vw_report esp1 "$(vw_pointer /boot/efi)"
vw_report esp2 "$(vw_pointer /boot/efi2)"
if [ -f /run/vwtest/then-loop ]; then source /run/vwtest/syncloop.sh; fi
vw_done
STEP
touch "$VM_RUN/then-loop"

# ESP state from the host: half-written spare slots (files without a manifest).
esp_state() {
    local disk=$1 slot state=""
    for slot in a b; do
        if mdir -b -i "$VM_RUN/disk$disk.img@@$VM_ESP_OFFSET" "::/volwatch/slot-$slot" >/dev/null 2>&1; then
            if vm_esp_cat "$VM_RUN" "$disk" "/volwatch/slot-$slot/MANIFEST.json" | grep -q generation; then
                state+="$slot:sealed "
            else
                state+="$slot:unsealed "
            fi
        fi
    done
    vm_esp_cat "$VM_RUN" "$disk" /volwatch/current.new | grep -q generation && state+="current.new "
    echo "${state% }"
}

# After a cut, disk 1's boot and disk 2's boot (which also repairs, then runs
# the next cut's loop unless it is the last) must each start a complete set.
assert_boot() {
    local what=$1 disk=$2 boot=$3 gen esp
    read -r gen esp <<<"$(vm_result booted "$boot")"
    [[ $gen =~ ^[0-9]+$ ]] || vm_fail "$what: disk $disk did not boot a volwatch set (generation '$gen': the fallback entry)"
    vm_expect "$what: disk $disk booted generation $gen from its own ESP" "$esp" "${VM_ESP_UUID[disk - 1]}"
    vm_expect "$what: disk $disk: no initramfs unpacking error" "$(vm_result unpack-errors "$boot")" 0
    boots_ok=$((boots_ok + 1))
}
assert_repair() {
    vm_expect "$1: vrebuild / completes the update" "$(vm_result vrebuild-exit "$2")" 0
    vm_expect "$1: vcheck --all is clean" "$(vm_result vcheck-exit "$2")" 0
}

mid=0 unsealed=0 boots_ok=0
printf 'source /run/vwtest/syncloop.sh\n' >"$VM_RUN/start.sh"
VM_FILES=("$VM_RUN/syncloop.sh")
cut=1
cycle_start=$SECONDS
vm_cut_boot "$VM_RUN/start.sh" 1 "$window" "cut $cut"
while :; do
    mid=$((mid + landed))
    s1=$(esp_state 1) s2=$(esp_state 2)
    if [[ "$s1 $s2" == *unsealed* || "$s1 $s2" == *current.new* ]]; then unsealed=$((unsealed + 1)); fi
    vm_log "cut $cut: ESP 1 [$s1] generation $(vm_esp_generation "$VM_RUN" 1); ESP 2 [$s2] generation $(vm_esp_generation "$VM_RUN" 2)"
    vm_esp_fsck "$VM_RUN" 1 "cut $cut"
    vm_esp_fsck "$VM_RUN" 2 "cut $cut"
    VM_FILES=()
    vm_boot "$VM_RUN" "$VM_RUN/check.sh" 1
    assert_boot "cut $cut" 1 "$VM_LAST"
    if [[ $cut == "$cuts" ]]; then
        vm_boot "$VM_RUN" "$VM_RUN/repair.sh" 2
        assert_boot "cut $cut" 2 "$VM_LAST"
        assert_repair "cut $cut" "$VM_LAST"
        vm_log "cycle $cut: $((SECONDS - cycle_start)) s"
        break
    fi
    # Disk 2 proves itself, repairs, and runs the next cut's loop.
    VM_FILES=("$VM_RUN/syncloop.sh" "$VM_RUN/then-loop")
    cut=$((cut + 1))
    vm_cut_boot "$VM_RUN/repair.sh" 2 "$window" "cut $cut"
    assert_boot "cut $((cut - 1))" 2 "$VM_LAST"
    assert_repair "cut $((cut - 1))" "$VM_LAST"
    vm_log "cycle $((cut - 1)): $((SECONDS - cycle_start)) s"
    cycle_start=$SECONDS
done
vm_log "power loss: seed $seed, $cuts cuts, $mid landed mid-sync (the guest's last line a sync start)," \
    "$unsealed left a half-written slot or pointer on an ESP, $boots_ok of $((2 * cuts)) boots after a cut started a complete set"
