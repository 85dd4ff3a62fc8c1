#!/usr/bin/env bash
# Scenario "ESP kept unmounted" (issue 11, parts 3 and 4, on real vfat): ESP 2
# is unmounted and the host config names it UUID=B1B2-C3D4 with fstype vfat,
# as Proxmox keeps its ESPs. In the guest, while `udevadm monitor` records
# every block uevent and a sampler reads the host's mount table 20 times a
# second, `vrebuild /` syncs it: it finds the partition with libblkid, mounts
# it in a private mount namespace, writes, syncs and unmounts it. Asserted:
# the sync wrote a new generation onto the partition; no process outside
# vrebuild ever saw it mounted, and it is mounted nowhere afterwards; udev saw
# no change event for the disk during the sync (the whole-disk flock keeps
# udev from probing, and nothing opened the disk for writing); vcheck --all
# (a read-only mount) is clean and leaves the file system's dirty bit clear
# (fsck.vfat -n); the same partition named by LABEL=, PARTUUID= and its
# device path syncs a generation each; and the firmware then boots the newest
# generation from disk 2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vm_new_synced_run esp-unmounted

cat >"$VM_RUN/sync.sh" <<STEP
esp_uuid=${VM_ESP_UUID[1]}
STEP
cat >>"$VM_RUN/sync.sh" <<'STEP'
dev=$(blkid -U "$esp_uuid")
disk=/dev/$(lsblk -no pkname "$dev")
vw_report device "$dev $disk"
vw_report before "$(vw_pointer /boot/efi2)"
umount /boot/efi2
sed -i -e 's|"/boot/efi2"|"UUID='"$esp_uuid"'"|' -e 's|^targets *=.*|&\nfstype  = "vfat"|' /etc/volwatch/volwatch.toml
grep -A3 '^\[\[helpers\]\]' /etc/volwatch/volwatch.toml | sed 's/^/VWLOG host config: /' >&3
udevadm settle
# Every block uevent, kernel and udev, during the sync.
udevadm monitor --kernel --udev --subsystem-match=block >/run/uevents 2>&1 &
monitor=$!
# The host's view of mounts, sampled while vrebuild runs.
( while :; do grep -c "^$dev \|^$dev$" /proc/mounts; sleep 0.05; done ) >/run/mount-samples 2>/dev/null &
sampler=$!
sleep 1
rc=0; vrebuild / >/run/vrebuild.out 2>&1 || rc=$?
sleep 2
kill "$sampler"
changes() { grep -cE '^(KERNEL|UDEV)\[[^]]*\] +change ' /run/uevents; }
during=$(changes)
# The control: a change event made on purpose is seen by the same monitor.
udevadm trigger --action=change "$disk"
sleep 2
kill "$monitor"
wait "$monitor" 2>/dev/null || true
sed 's/^/VWLOG vrebuild: /' /run/vrebuild.out >&3
sed 's/^/VWLOG udevadm monitor: /' /run/uevents >&3
vw_report vrebuild-exit "$rc"
vw_report synced "$(grep -c "UUID=$esp_uuid" /run/vrebuild.out)"
vw_report samples "$(wc -l </run/mount-samples) $(grep -cv '^0$' /run/mount-samples)"
vw_report uevents "$during $(( $(changes) - during ))"
vw_report mounted-after "$(cat /proc/*/mountinfo 2>/dev/null | awk -v d="$dev" '$0 ~ " " d " " {n++} END {print n + 0}')"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
rc=0; fsck.vfat -n "$dev" >/run/fsck.out 2>&1 || rc=$?
sed 's/^/VWLOG fsck.vfat: /' /run/fsck.out >&3
vw_report fsck "$rc $(grep -ci 'dirty' /run/fsck.out)"
# The other ways to name it. Each spec is a target of its own (its
# bootstamp is keyed by the spec as written), so each syncs a new generation
# onto the same partition, found by libblkid, still never mounted outside.
spec="UUID=$esp_uuid" results=""
for next in "LABEL=$(blkid -s LABEL -o value "$dev")" "PARTUUID=$(blkid -s PARTUUID -o value "$dev")" "$dev"; do
    sed -i "s|\"$spec\"|\"$next\"|" /etc/volwatch/volwatch.toml
    spec=$next
    rc=0; vrebuild / >/run/vrebuild.out 2>&1 || rc=$?
    sed "s|^|VWLOG vrebuild ($spec): |" /run/vrebuild.out >&3
    results+="$rc:$(grep -c "helper $spec: helper updated" /run/vrebuild.out) "
done
vw_report other-specs "${results% }"
vw_report mounted-after-specs "$(cat /proc/*/mountinfo 2>/dev/null | awk -v d="$dev" '$0 ~ " " d " " {n++} END {print n + 0}')"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck (device path): /' /run/vcheck.out >&3
vw_report vcheck-specs "$rc"
mount -o ro "$dev" /boot/efi2
vw_report after "$(vw_pointer /boot/efi2)"
umount /boot/efi2
echo "VWTEST done" >&3
sync
systemctl poweroff --force
STEP
cat >"$VM_RUN/check.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation) $(vw_cmdline esp)"
vw_done
STEP

vm_boot "$VM_RUN" "$VM_RUN/sync.sh" 1
read -r dev disk <<<"$(vm_result device)"
vm_log "ESP 2 in the guest: $dev on $disk"
before=$(vm_result before)
after=$(vm_result after)
vm_expect "vrebuild / with ESP 2 named by UUID and unmounted" "$(vm_result vrebuild-exit)" 0
[[ $(vm_result synced) -ge 1 ]] || vm_fail "vrebuild's output does not name UUID=${VM_ESP_UUID[1]}"
[[ ${after% *} =~ ^[0-9]+$ && ${after% *} -gt ${before% *} ]] ||
    vm_fail "ESP 2 should hold a newer generation after the sync: before '$before', after '$after'"
vm_log "ok: ESP 2 went from generation ${before% *} to ${after% *} while unmounted"
read -r samples seen <<<"$(vm_result samples)"
(( samples >= 10 )) || vm_fail "the mount sampler ran only $samples times"
vm_expect "samples of /proc/mounts outside vrebuild that showed ESP 2 mounted (of $samples)" "$seen" 0
vm_expect "processes whose mount table shows ESP 2 after the sync" "$(vm_result mounted-after)" 0
read -r during control <<<"$(vm_result uevents)"
(( control >= 1 )) || vm_fail "udevadm monitor did not see the control change event (udevadm trigger --action=change $disk): it was not listening"
vm_expect "udev change events for block devices during the sync (the control after it: $control)" "$during" 0
vm_expect "vcheck --all (a read-only mount of ESP 2)" "$(vm_result vcheck-exit)" 0
vm_expect "fsck.vfat -n of ESP 2 after the sync and the check: exit status, dirty-bit lines" "$(vm_result fsck)" "0 0"
vm_expect "syncs with ESP 2 named by LABEL=, PARTUUID= and its device path (exit:updated each)" "$(vm_result other-specs)" "0:1 0:1 0:1"
vm_expect "processes whose mount table shows ESP 2 after those syncs" "$(vm_result mounted-after-specs)" 0
vm_expect "vcheck --all with ESP 2 named by its device path" "$(vm_result vcheck-specs)" 0
(( ${after% *} == ${before% *} + 4 )) ||
    vm_fail "ESP 2 should hold four generations more than before (UUID=, LABEL=, PARTUUID=, device): before '$before', after '$after'"
vm_expect "ESP 2 pointer read from the host" "$(vm_esp_generation "$VM_RUN" 2)" "${after% *}"

vm_boot "$VM_RUN" "$VM_RUN/check.sh" 2
vm_expect "boot from disk 2: the generation written while unmounted" "$(vm_result booted)" "${after% *} ${VM_ESP_UUID[1]}"
