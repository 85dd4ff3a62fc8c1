#!/usr/bin/env bash
# Scenario "systemd-boot" (issue 11, parts 1 and 5): ESP 2's boot loader is
# systemd-boot, which reads only Boot Loader Specification Type #1 entries,
# and the host config asks volwatch to write them there ([helpers.entry],
# boot counting with 2 tries). Proven by booting:
#   1. from disk 1 (GRUB), two syncs of ESP 2 leave two counted entries, each
#      naming a sealed slot of its generation, and vcheck --all is clean;
#   2. from disk 2, systemd-boot starts the newer one (its generation on the
#      kernel command line, its name in LoaderEntrySelected), and
#      systemd-bless-boot marks it good (the counter leaves its name);
#   3. a generation with a broken initramfs (the kernel panics, panic=3
#      reboots) is written as a counted entry: systemd-boot tries it twice,
#      then falls back by itself to the previous entry; vcheck reports the
#      failed generation, vrebuild refuses to overwrite the set that boots
#      without --force;
#   4. VOLWATCH_VM_SDBOOT_CUTS (default 1) power cuts (QEMU killed) while ESP 2's
#      entries and slots are rewritten in a loop; after each, systemd-boot
#      boots a complete set and the entries on the ESP, read from the host,
#      each name a slot sealed with their generation.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cuts=${VOLWATCH_VM_SDBOOT_CUTS:-1}   # one cut by default; power-loss.sh makes the many
seed=${VOLWATCH_VM_SEED:-$(date +%s)}
window=${VOLWATCH_VM_CUT_WINDOW:-20}
RANDOM=$seed
vm_new_synced_run sd-boot
vm_install_sdboot "$VM_RUN" 2
esp=${VM_ESP_UUID[1]}

# Guest: the host config gets a second [[helpers]] table for ESP 2 with
# entries; /etc/volwatch/esp2.toml names ESP 2 alone (to write it alone).
cat >"$VM_RUN/common.sh" <<STEP
entry_table='[[helpers]]
volume  = "/"
targets = ["/boot/efi2"]
[helpers.entry]
id      = "vwvm"
title   = "Debian (volwatch)"
linux   = "vmlinuz"
initrd  = ["initrd.img"]
options = "root=UUID=$VM_ROOT_UUID ro console=ttyS0,115200 quiet systemd.show_status=0 panic=3 volwatch.generation={generation} volwatch.slot={slot} volwatch.esp=$esp"
tries   = 2'
STEP
cat >>"$VM_RUN/common.sh" <<'STEP'
entries() { ls /boot/efi2/loader/entries 2>/dev/null | sort | tr '\n' ' ' | sed 's/ $//'; }
selected() {   # LoaderEntrySelected: 4 bytes of attributes, then UTF-16LE (ASCII here)
    local var=/sys/firmware/efi/efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
    if [ -r $var ]; then cat $var | tail -c +5 | tr -d '\0'; else echo none; fi   # efivarfs cannot seek
}
run() {   # run NAME CMD...: its output as VWLOG lines, its status as "NAME-exit"
    local name=$1 rc=0; shift
    "$@" >/run/$name.out 2>&1 || rc=$?
    sed "s/^/VWLOG $name: /" /run/$name.out >&3
    vw_report "$name-exit" "$rc"
}
STEP

cat >"$VM_RUN/setup.sh" <<'STEP'
source /run/vwtest/common.sh
# systemd-bless-boot looks for the ESP it was booted from at /efi, /boot and
# /boot/efi; this one is mounted at /boot/efi2.
mkdir -p /etc/systemd/system/systemd-bless-boot.service.d
printf '[Service]\nEnvironment=SYSTEMD_ESP_PATH=/boot/efi2\n' >/etc/systemd/system/systemd-bless-boot.service.d/esp.conf
cfg=/etc/volwatch/volwatch.toml
sed -n '/^\[\[helpers\]\]/q;p' $cfg >/run/head.toml
{ cat /run/head.toml; printf '[[helpers]]\nvolume  = "/"\ntargets = ["/boot/efi"]\n\n%s\n' "$entry_table"; } >$cfg
{ cat /run/head.toml; printf '%s\n' "$entry_table"; } >/etc/volwatch/esp2.toml
run vrebuild1 vrebuild /
run vrebuild2 vrebuild / -c /etc/volwatch/esp2.toml --force --helpers-only
vw_report esp2 "$(vw_pointer /boot/efi2)"
vw_report entries "$(entries)"
run vcheck vcheck --all
vw_done
STEP

cat >"$VM_RUN/bless.sh" <<'STEP'
source /run/vwtest/common.sh
vw_report booted "$(vw_cmdline generation) $(vw_cmdline slot) $(vw_cmdline esp)"
vw_report selected "$(selected)"
# systemd-bless-boot renames the entry once boot-complete.target is reached.
g=$(vw_cmdline generation)
for _ in $(seq 1 60); do entries | grep -q "vwvm-$g.conf" && break; sleep 1; done
vw_report blessed "$(entries)"
vw_report bless-unit "$(systemctl show -p ActiveState,Result --value systemd-bless-boot.service | tr '\n' ' ')"
journalctl -b -u systemd-bless-boot --no-pager -o cat | sed 's/^/VWLOG bless: /' >&3
run vcheck vcheck --all
# The broken generation: ESP 2 alone gets an initramfs of random bytes.
good=$(readlink -f /initrd.img)
cp -p "$good" /var/tmp/initrd.good
head -c 3M /dev/urandom >"$good"
run broken vrebuild / -c /etc/volwatch/esp2.toml --force --helpers-only
cp -p /var/tmp/initrd.good "$good"
vw_report esp2 "$(vw_pointer /boot/efi2)"
vw_report entries "$(entries)"
echo "VWTEST done" >&3
sync
systemctl poweroff --force
STEP

cat >"$VM_RUN/fallback.sh" <<'STEP'
source /run/vwtest/common.sh
vw_report booted "$(vw_cmdline generation) $(vw_cmdline slot) $(vw_cmdline esp)"
vw_report selected "$(selected)"
vw_report entries "$(entries)"
run vcheck vcheck --all
run refused vrebuild / -c /etc/volwatch/esp2.toml --helpers-only
vw_report entries-after "$(entries)"
vw_report esp2 "$(vw_pointer /boot/efi2)"
if [ -f /run/vwtest/then-loop ]; then
    # A good generation first, forced over the set that boots: the loop's
    # cuts then always leave a good entry behind (G2's entry went with its
    # slot; the failed one sorts last).
    run good vrebuild / -c /etc/volwatch/esp2.toml --force --helpers-only
    n=0
    while :; do
        n=$((n + 1))
        echo "VWTEST sync-start $n" >&3
        vrebuild / -c /etc/volwatch/esp2.toml --force --helpers-only >/run/vrebuild.out 2>&1
        echo "VWTEST sync-end $n $?" >&3
    done
fi
echo "VWTEST done" >&3
sync
systemctl poweroff --force
STEP

cat >"$VM_RUN/after-cut.sh" <<'STEP'
source /run/vwtest/common.sh
vw_report booted "$(vw_cmdline generation) $(vw_cmdline slot) $(vw_cmdline esp)"
vw_report selected "$(selected)"
vw_report unpack-errors "$(journalctl -b -k -o cat --no-pager | grep -ci 'initramfs unpacking failed')"
run repair vrebuild /
run vcheck vcheck --all
vw_done
STEP

VM_FILES=("$VM_RUN/common.sh")

# 1. Two syncs of ESP 2 with entries, from disk 1.
vm_boot "$VM_RUN" "$VM_RUN/setup.sh" 1
vm_expect "vrebuild / with entries on ESP 2" "$(vm_result vrebuild1-exit)" 0
vm_expect "a second sync of ESP 2" "$(vm_result vrebuild2-exit)" 0
vm_expect "vcheck --all after two syncs" "$(vm_result vcheck-exit)" 0
read -r g2 s2 <<<"$(vm_result esp2)"
g1=$((g2 - 1))
vm_expect "entries on ESP 2 (the guest's view)" "$(vm_result entries)" "vwvm-$g1+2.conf vwvm-$g2+2.conf"
vm_expect "entries on ESP 2 (the host's view)" "$(vm_esp_entries "$VM_RUN" 2 | tr '\n' ' ' | sed 's/ $//')" "vwvm-$g1+2.conf vwvm-$g2+2.conf"
vm_expect "the entry of generation $g2 names its slot" \
    "$(vm_esp_cat "$VM_RUN" 2 "/loader/entries/vwvm-$g2+2.conf" | sed -n 's/^linux *//p')" "/volwatch/slot-$s2/vmlinuz"

# 2. systemd-boot boots the newest entry; systemd-bless-boot marks it good.
vm_boot "$VM_RUN" "$VM_RUN/bless.sh" 2
vm_expect "systemd-boot booted from disk 2" "$(vm_result booted)" "$g2 $s2 $esp"
vm_expect "LoaderEntrySelected" "$(vm_result selected)" "vwvm-$g2+2.conf"
vm_expect "after systemd-bless-boot" "$(vm_result blessed)" "vwvm-$g1+2.conf vwvm-$g2.conf"
vm_expect "vcheck --all with a blessed entry" "$(vm_result vcheck-exit)" 0
vm_expect "the broken generation was written" "$(vm_result broken-exit)" 0
read -r g3 s3 <<<"$(vm_result esp2)"
vm_expect "broken generation" "$g3" "$((g2 + 1))"
vm_expect "entries with the broken generation (the reused slot's entry removed)" "$(vm_result entries)" "vwvm-$g2.conf vwvm-$g3+2.conf"

# 3. Two tries of the broken generation, then the fallback, in one power-on.
VM_REBOOT=1 vm_boot "$VM_RUN" "$VM_RUN/fallback.sh" 2
panics=$(tr -d '\r' <"$VM_LAST/console.log" | grep -c 'Kernel panic' || true)
vm_expect "kernel panics of the broken generation before the fallback (its 2 tries)" "$panics" 2
vm_expect "systemd-boot fell back by itself to" "$(vm_result booted)" "$g2 $s2 $esp"
vm_expect "LoaderEntrySelected after the fallback" "$(vm_result selected)" "vwvm-$g2.conf"
vm_expect "entries: the broken one out of tries" "$(vm_result entries)" "vwvm-$g2.conf vwvm-$g3+0-2.conf"
[[ $(vm_result vcheck-exit) != 0 ]] || vm_fail "vcheck --all is clean although generation $g3 failed to boot"
grep -q "failed to boot" <(tr -d '\r' <"$VM_LAST/results.log") ||
    vm_fail "vcheck does not say that generation $g3 failed to boot"
vm_log "ok: vcheck reports: $(tr -d '\r' <"$VM_LAST/results.log" | grep -m1 'failed to boot' | sed 's/^VWLOG //')"
[[ $(vm_result refused-exit) != 0 ]] || vm_fail "vrebuild overwrote the only set that boots without --force"
vm_expect "vrebuild without --force left the entries alone" "$(vm_result entries-after)" "vwvm-$g2.conf vwvm-$g3+0-2.conf"

# 4. Power cuts while ESP 2's slots and entries are rewritten.
cut=0
while (( cut < cuts )); do
    cut=$((cut + 1))
    vm_log "systemd-boot power cut $cut of $cuts, seed $seed (reproduce with VOLWATCH_VM_SEED=$seed)"
    touch "$VM_RUN/then-loop"
    VM_FILES=("$VM_RUN/common.sh" "$VM_RUN/then-loop")
    vm_cut_boot "$VM_RUN/fallback.sh" 2 "$window" "systemd-boot cut $cut"
    vm_log "cut $cut: entries on ESP 2 [$(vm_esp_entries "$VM_RUN" 2 | tr '\n' ' ')]"
    vm_esp_fsck "$VM_RUN" 2 "cut $cut"
    vm_esp_check_entries "$VM_RUN" 2 vwvm || vm_fail "cut $cut: the entries on ESP 2 do not each name a complete sealed set"
    VM_FILES=("$VM_RUN/common.sh")
    VM_REBOOT=1 vm_boot "$VM_RUN" "$VM_RUN/after-cut.sh" 2
    read -r gen slot from <<<"$(vm_result booted)"
    [[ $gen =~ ^[0-9]+$ ]] || vm_fail "cut $cut: systemd-boot did not boot a volwatch generation ('$gen')"
    vm_expect "cut $cut: booted from ESP 2" "$from" "$esp"
    vm_log "cut $cut: systemd-boot started generation $gen (slot $slot), entry $(vm_result selected)"
    vm_expect "cut $cut: no initramfs unpacking error" "$(vm_result unpack-errors)" 0
    vm_expect "cut $cut: vrebuild / completes the update" "$(vm_result repair-exit)" 0
    vm_expect "cut $cut: vcheck --all is clean" "$(vm_result vcheck-exit)" 0
done
