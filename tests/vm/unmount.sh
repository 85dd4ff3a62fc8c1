#!/usr/bin/env bash
# Scenario "unmount refusal": vwatch holds a *volume* (docs/vwatch.md, "Unmount
# refusal": an O_DIRECTORY descriptor on the volume root while it needs work),
# not its helper targets. In the guest: an ext4 volume with its own volume
# config, mounted at /srv/vol; a source change makes vwatch start a slow
# rebuild; umount /srv/vol meanwhile fails with EBUSY and the journal says
# "refusing unmount"; once the rebuild finished, umount succeeds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vm_new_synced_run unmount

cat >"$VM_RUN/unmount.sh" <<'STEP'
sed -i -e 's/^settle *=.*/settle = "2s"/' -e 's/^startup_delay *=.*/startup_delay = "1s"/' \
    -e 's/^\[rebuilders\]$/[rebuilders]\nvwtest-slow = { argv = ["sh", "-c", "sleep 25; date >\\"$1\\"", "sh", "{product}"], timeout = "5m" }/' \
    /etc/volwatch/volwatch.toml
truncate -s 64M /var/tmp/vol.img
mkfs.ext4 -q -F /var/tmp/vol.img
mkdir -p /srv/vol
mount -o loop /var/tmp/vol.img /srv/vol
mkdir -p /srv/vol/etc/volwatch /srv/vol/src
printf 'version = 1\n[[cache]]\nname = "slow"\nsources = ["src"]\nproduct = "out"\ndepth = "shallow"\nrebuild = "vwtest-slow"\n' \
    >/srv/vol/etc/volwatch/bootcaches.toml
date >/srv/vol/out
systemctl restart vwatch.service
sleep 5
echo change >/srv/vol/src/file
# Wait (bounded) for vwatch to start the slow rebuild.
for _ in $(seq 1 60); do
    pgrep -f 'sleep 25' >/dev/null && break
    sleep 1
done
vw_report rebuilding "$(pgrep -f 'sleep 25' >/dev/null && echo yes || echo no)"
err=$(umount /srv/vol 2>&1); rc=$?
vw_report umount-during "$rc $err"
vw_report refusing "$(journalctl -u vwatch -o cat --no-pager | grep -c '/srv/vol: busy (.*); refusing unmount')"
# Wait (bounded) for the rebuild to finish and vwatch to release the volume.
for _ in $(seq 1 120); do
    journalctl -u vwatch -o cat --no-pager | grep -q '/srv/vol: consistent; unmount allowed' && break
    sleep 2
done
rc=0; vcheck /srv/vol >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
err=$(umount /srv/vol 2>&1); rc=$?
vw_report umount-after "$rc $err"
vw_report esp-held "$(ls -l /proc/"$(systemctl show -p MainPID --value vwatch.service)"/fd 2>/dev/null | grep -c ' /boot/efi')"
vw_done
STEP

vm_boot "$VM_RUN" "$VM_RUN/unmount.sh" 1
vm_expect "vwatch started the slow rebuild" "$(vm_result rebuilding)" yes
during=$(vm_result umount-during)
[[ $during == 32* && $during == *"busy"* ]] || vm_fail "umount /srv/vol during the rebuild: expected EBUSY (exit 32, 'target is busy'), got '$during'"
vm_log "ok: umount during the rebuild failed: $during"
[[ $(vm_result refusing) -ge 1 ]] || vm_fail "the journal does not say why (no 'refusing unmount' line for /srv/vol)"
vm_log "ok: vwatch logged 'refusing unmount' for /srv/vol"
vm_expect "vcheck /srv/vol after the rebuild" "$(vm_result vcheck-exit)" 0
vm_expect "umount /srv/vol after the rebuild" "$(vm_result umount-after)" "0 "
vm_log "note: descriptors vwatch holds on /boot/efi: $(vm_result esp-held) (it holds volumes, not helper targets)"
