#!/usr/bin/env bash
# The virtual-machine acceptance suite (issue 10): scripts/test.sh --vm runs it
# after a normal build. Usage: tests/vm/run.sh DEB [SCENARIO...]
# Scenarios (default: all, in this order): boot-sync grub-dropin sd-boot esp-unmounted
# power-loss shutdown package unmount
# Environment: VOLWATCH_VM_CUTS (power cuts, default 2), VOLWATCH_VM_SDBOOT_CUTS
# (the systemd-boot scenario's, default 1), VOLWATCH_VM_SEED,
# VOLWATCH_VM_BUDGET (seconds: no scenario starts once the suite has run this
# long; the ones left are printed as skipped, never counted as passed),
# VOLWATCH_VM_CACHE (base root cache, default /var/cache/volwatch-vm),
# VOLWATCH_VM_WORK (disk images, default a temporary directory),
# VOLWATCH_VM_BOOT_TIMEOUT (seconds per boot, default 600).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

deb=${1:?usage: tests/vm/run.sh DEB [SCENARIO...]}
shift
scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(boot-sync grub-dropin sd-boot esp-unmounted power-loss shutdown package unmount)

# Skip, loudly, where the machine cannot run a VM; never pass without booting.
[[ $(id -u) == 0 ]] || vm_skip "the VM suite needs root (debootstrap, chroot)"
for tool in qemu-system-x86_64 debootstrap grub-mkstandalone mkfs.vfat mcopy mtype sfdisk mkfs.ext4 dpkg-deb python3; do
    command -v "$tool" >/dev/null || vm_skip "$tool not found (scripts/deps.sh vm installs it)"
done
for file in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd /usr/lib/grub/x86_64-efi/linux.mod; do
    [[ -e $file ]] || vm_skip "$file not found (scripts/deps.sh vm installs it)"
done
vm_mirror >/dev/null || vm_skip "no Debian mirror in the apt configuration for debootstrap"

VM_WORK=${VOLWATCH_VM_WORK:-$(mktemp -d /var/tmp/volwatch-vm.XXXXXX)}
export VM_WORK
vm_log "work directory $VM_WORK, accelerator $(vm_accel)"
suite_start=$SECONDS
vm_assemble "$VM_WORK/golden" "$deb"

failed=()
skipped=()
retried=0
budget=${VOLWATCH_VM_BUDGET:-0}
for scenario in "${scenarios[@]}"; do
    [[ -f $here/$scenario.sh ]] || vm_die "no scenario $scenario"
    if (( budget > 0 && SECONDS - suite_start >= budget )); then
        vm_log "=== scenario $scenario SKIPPED: the suite's time budget (VOLWATCH_VM_BUDGET=$budget s) is spent"
        skipped+=("$scenario")
        continue
    fi
    vm_log "=== scenario $scenario"
    start=$SECONDS
    # vm_boot writes here the boot directory of each boot it retried.
    export VM_RETRY_LOG=$VM_WORK/$scenario.retried
    rm -f "$VM_RETRY_LOG"
    if bash "$here/$scenario.sh"; then result="passed in"; else result="FAILED after"; failed+=("$scenario"); fi
    n=0
    [[ ! -f $VM_RETRY_LOG ]] || n=$(wc -l <"$VM_RETRY_LOG")
    retried=$((retried + n))
    vm_log "=== scenario $scenario $result $((SECONDS - start)) s$(vm_retried_note "$n")"
done
vm_log "suite: $((SECONDS - suite_start)) s; ran $(( ${#scenarios[@]} - ${#skipped[@]} )) of ${#scenarios[@]} scenarios, ${#failed[@]} failed${skipped[*]:+, skipped for time: ${skipped[*]}}$(vm_retried_note "$retried")"
if [[ ${#failed[@]} -gt 0 ]]; then
    vm_log "failed scenarios: ${failed[*]} (disk images and logs kept in $VM_WORK)"
    exit 1
fi
if [[ -z ${VOLWATCH_VM_WORK:-} ]]; then
    if (( retried > 0 )); then
        # The retried boots' consoles are the evidence of the emulator hang.
        find "$VM_WORK" -name '*.img' -delete
        vm_log "boot logs kept in $VM_WORK (boots retried: $(cat "$VM_WORK"/*.retried | tr '\n' ' '))"
    else
        rm -rf "$VM_WORK"
    fi
fi
