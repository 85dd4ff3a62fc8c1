#!/usr/bin/env bash
# Scenario "boot and first sync": vwatch is active and ready after the first
# boot, vrebuild / fills both ESPs, vcheck --all is clean, and each ESP then
# boots the generation its pointer names (GRUB read it from volwatch/current).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vm_new_run boot-sync

cat >"$VM_RUN/first.sh" <<'STEP'
vw_report generation "$(vw_cmdline generation)"
vw_report vwatch-state "$(systemctl show -p ActiveState --value vwatch.service)"
vw_report vwatch-status "$(systemctl show -p StatusText --value vwatch.service)"
vw_report gate-state "$(systemctl show -p ActiveState --value volwatch-rebootgate.service)"
rc=0; vrebuild / >/run/vrebuild.out 2>&1 || rc=$?
sed 's/^/VWLOG vrebuild: /' /run/vrebuild.out >&3
vw_report vrebuild-exit "$rc"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
vw_report esp1 "$(vw_pointer /boot/efi)"
vw_report esp2 "$(vw_pointer /boot/efi2)"
vw_done
STEP
cat >"$VM_RUN/check.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation) $(vw_cmdline slot) $(vw_cmdline esp)"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
vw_done
STEP

vm_boot "$VM_RUN" "$VM_RUN/first.sh" 1 900
vm_expect "first boot is the fallback entry" "$(vm_result generation)" none
vm_expect "vwatch.service is active (Type=notify: READY was sent)" "$(vm_result vwatch-state)" active
vm_log "vwatch status text: $(vm_result vwatch-status)"
vm_expect "the shutdown gate is active" "$(vm_result gate-state)" active
vm_expect "vrebuild / exit status" "$(vm_result vrebuild-exit)" 0
vm_expect "vcheck --all exit status" "$(vm_result vcheck-exit)" 0
esp1=$(vm_result esp1)
esp2=$(vm_result esp2)
[[ $esp1 != "none none" ]] || vm_fail "ESP 1 has no pointer after vrebuild"
vm_expect "both ESPs hold the same generation" "${esp2% *}" "${esp1% *}"
vm_expect "ESP 1 pointer read from the host" "$(vm_esp_generation "$VM_RUN" 1)" "${esp1% *}"
vm_expect "ESP 2 pointer read from the host" "$(vm_esp_generation "$VM_RUN" 2)" "${esp2% *}"

for disk in 1 2; do
    vm_boot "$VM_RUN" "$VM_RUN/check.sh" "$disk"
    want=$esp1
    [[ $disk == 2 ]] && want=$esp2
    vm_expect "boot from disk $disk: generation, slot and ESP on the kernel command line" \
        "$(vm_result booted)" "$want ${VM_ESP_UUID[disk - 1]}"
    vm_expect "vcheck --all after booting from disk $disk" "$(vm_result vcheck-exit)" 0
done
touch "$VM_RUN/passed"
