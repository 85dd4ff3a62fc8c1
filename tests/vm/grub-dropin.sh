#!/usr/bin/env bash
# Scenario "GRUB through the shipped drop-in": on a synced machine, the guest
# writes /etc/default/grub, moves both ESPs to a new generation, and runs
# grub-common's real grub-mkconfig (what update-grub runs after every kernel
# package), which runs the package's /etc/grub.d/42_volwatch among GRUB's own
# scripts, with the GRUB_DEVICE* it exports. The drop-in's part of that
# grub.cfg must be what the drop-in writes when run on its own (which finds
# the root with grub-probe instead). That part goes into a grub.cfg on ESP 1,
# behind the header grub-mkconfig's 00_header would write, and ESP 1's
# BOOTX64.EFI becomes a GRUB that only finds that file and `configfile`s it,
# as Debian's own grubx64.efi loads /boot/grub/grub.cfg. The next boot must
# come from the drop-in's entry (its kernel options name it) with the
# generation and slot the entry read from volwatch/current, and the root
# grub-mkconfig gave it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vm_new_synced_run grub-dropin

cat >"$VM_RUN/dropin.sh" <<'STEP'
cat >/etc/default/grub <<'DEFAULTS'
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX="console=ttyS0,115200"
GRUB_CMDLINE_LINUX_DEFAULT="quiet systemd.show_status=0"
GRUB_VOLWATCH_CMDLINE='volwatch.generation=$generation volwatch.slot=$slot volwatch.esp=dropin'
DEFAULTS
vw_report before "$(vw_pointer /boot/efi)"
rc=0; vrebuild --helpers-only --force / >/run/vrebuild.out 2>&1 || rc=$?
sed 's/^/VWLOG vrebuild: /' /run/vrebuild.out >&3
vw_report vrebuild-exit "$rc"
rc=0; /etc/grub.d/42_volwatch >/run/dropin.cfg 2>/run/dropin.err || rc=$?
sed 's/^/VWLOG 42_volwatch: /' /run/dropin.err /run/dropin.cfg >&3
vw_report dropin-exit "$rc"
rc=0; grub-script-check /run/dropin.cfg >&3 2>&1 || rc=$?
vw_report script-check "$rc"
vw_report entries "$(grep -c '^menuentry ' /run/dropin.cfg)"
vw_report targets "$(grep -o 'from volwatch helper [^'\'']*' /run/dropin.cfg | sed 's/from volwatch helper //' | tr '\n' ' ')"
# update-grub is grub2-common's "grub-mkconfig -o /boot/grub/grub.cfg"; the
# output goes to /run here, so nothing of the machine's own boot changes.
# /boot/grub is made by grub-install on a machine that boots GRUB (this one
# boots a standalone GRUB from the ESP), and 05_debian_theme fails without it.
mkdir -p /boot/grub
rc=0; grub-mkconfig -o /run/mkconfig.cfg >/run/mkconfig.err 2>&1 || rc=$?
sed 's/^/VWLOG grub-mkconfig: /' /run/mkconfig.err >&3
vw_report mkconfig-exit "$rc"
vw_report mkconfig-scripts "$(grep -c '^### BEGIN /etc/grub.d/' /run/mkconfig.cfg)"
sed -n '\|^### BEGIN /etc/grub.d/42_volwatch ###$|,\|^### END /etc/grub.d/42_volwatch ###$|p' /run/mkconfig.cfg |
    sed '1d;$d' >/run/mkconfig-dropin.cfg
if cmp -s /run/mkconfig-dropin.cfg /run/dropin.cfg; then vw_report mkconfig-same yes
else vw_report mkconfig-same no; diff /run/dropin.cfg /run/mkconfig-dropin.cfg | sed 's/^/VWLOG diff: /' >&3 || true; fi
{ printf 'set timeout=0\nset default=0\nmenuentry_id_option=--id\n'; cat /run/mkconfig-dropin.cfg; } >/boot/efi/grub.cfg.tmp
sync /boot/efi/grub.cfg.tmp && mv /boot/efi/grub.cfg.tmp /boot/efi/grub.cfg && sync /boot/efi/grub.cfg /boot/efi
vw_report after "$(vw_pointer /boot/efi)"
vw_done
STEP
cat >"$VM_RUN/check.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation) $(vw_cmdline slot) $(vw_cmdline esp)"
vw_report root "$(tr ' ' '\n' </proc/cmdline | sed -n 's/^root=//p')"
vw_report pointer "$(vw_pointer /boot/efi)"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
vw_done
STEP

vm_boot "$VM_RUN" "$VM_RUN/dropin.sh"
vm_expect "vrebuild --helpers-only --force / exit status" "$(vm_result vrebuild-exit)" 0
before=$(vm_result before)
after=$(vm_result after)
vm_expect "the forced sync made one new generation on ESP 1" "${after% *}" "$(( ${before% *} + 1 ))"
vm_log "ok: the forced sync moved ESP 1 from generation ${before% *} to ${after% *}"
vm_expect "/etc/grub.d/42_volwatch exit status" "$(vm_result dropin-exit)" 0
vm_expect "grub-script-check on its output" "$(vm_result script-check)" 0
vm_expect "one entry per mounted ESP" "$(vm_result targets)" "/boot/efi /boot/efi2 "
vm_expect "grub-mkconfig exit status (it runs grub-script-check on the whole file)" "$(vm_result mkconfig-exit)" 0
vm_log "ok: grub-mkconfig ran $(vm_result mkconfig-scripts) scripts of /etc/grub.d with output"
vm_expect "42_volwatch's part of grub-mkconfig's grub.cfg is what it writes on its own" "$(vm_result mkconfig-same)" yes

# ESP 1 now boots a GRUB that finds its own ESP and loads the grub.cfg there.
loader=$VM_RUN/loader.cfg
cat >"$loader" <<CFG
insmod part_gpt
insmod fat
search --no-floppy --fs-uuid --set=root ${VM_ESP_UUID[0]}
configfile (\$root)/grub.cfg
CFG
grub-mkstandalone -O x86_64-efi --modules="part_gpt fat search search_fs_uuid linux normal configfile test echo" \
    --locales= --themes= --fonts= -o "$VM_RUN/BOOTX64.EFI" "boot/grub/grub.cfg=$loader" || vm_fail "grub-mkstandalone failed"
mcopy -o -i "$VM_RUN/disk1.img@@$VM_ESP_OFFSET" "$VM_RUN/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI || vm_fail "mcopy BOOTX64.EFI failed"
vm_esp_cat "$VM_RUN" 1 /grub.cfg >"$VM_RUN/dropin.cfg"
grep -q "^menuentry 'Debian GNU/Linux, from volwatch helper /boot/efi'" "$VM_RUN/dropin.cfg" ||
    vm_fail "ESP 1's grub.cfg lacks the drop-in's entry: $(head -c 2000 "$VM_RUN/dropin.cfg")"

vm_boot "$VM_RUN" "$VM_RUN/check.sh" 1
vm_expect "booted through the drop-in's entry: generation and slot from volwatch/current" \
    "$(vm_result booted)" "$after dropin"
vm_expect "root= as grub-mkconfig gave it to the drop-in" "$(vm_result root)" "UUID=$VM_ROOT_UUID"
vm_expect "vcheck --all after the boot" "$(vm_result vcheck-exit)" 0
touch "$VM_RUN/passed"
