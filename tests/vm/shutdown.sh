#!/usr/bin/env bash
# Scenario "shutdown": systemctl poweroff seconds after a source change waits
# for the rebuild and both ESP syncs (read from the host afterwards); the
# persistent journal of that boot shows the gate's shutdown-delay events; the
# next boot is clean. Then a rebuilder that hangs holds power-off no longer
# than the gate's bound (--wait=20s by a drop-in), and the machine still boots
# its previous set.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vm_new_synced_run shutdown
before=$(vm_esp_generation "$VM_RUN" 1)
[[ -n $before ]] || vm_fail "the synced image has no pointer on ESP 1"

cat >"$VM_RUN/change.sh" <<'STEP'
# Short settle and start-up delay, then an initramfs source change, then power-off.
sed -i -e 's/^settle *=.*/settle = "2s"/' -e 's/^startup_delay *=.*/startup_delay = "1s"/' /etc/volwatch/volwatch.toml
systemctl restart vwatch.service
echo "# vwtest $(date +%s%N)" >>/etc/initramfs-tools/modules
sleep 4
vw_report generation-at-poweroff "$(vw_pointer /boot/efi)"
vw_log_dump
echo "VWTEST done" >&3
systemctl poweroff --no-block
STEP
cat >"$VM_RUN/after.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation)"
vw_report previous-boot-gate "$(journalctl -b -1 --no-pager -o cat -t vrebootgate | grep -c 'event=shutdown-delay-\(begins\|ends\)')"
journalctl -b -1 --no-pager -o short-monotonic -t vrebootgate -t vrebuild | sed 's/^/VWLOG previous boot: /' >&3
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
# Now a rebuilder that never ends, first in the volume config, and a gate bound of 20 s.
mkdir -p /etc/systemd/system/volwatch-rebootgate.service.d
printf '[Service]\nExecStop=\nExecStop=/usr/sbin/vrebootgate --wait=20s\n' \
    >/etc/systemd/system/volwatch-rebootgate.service.d/vwtest-bound.conf
systemctl daemon-reload
sed -i 's/^\[rebuilders\]$/[rebuilders]\nvwtest-hang = { argv = ["sleep", "infinity"], timeout = "1h" }/' /etc/volwatch/volwatch.toml
{
    echo 'version = 1'
    printf '[[cache]]\nname = "vwtest-hang"\nsources = ["etc/vwtest-hang"]\nproduct = "var/lib/vwtest-hang.stamp"\ndepth = "shallow"\nrebuild = "vwtest-hang"\n\n'
    grep -v '^version' /etc/volwatch/bootcaches.toml
} >/run/bootcaches.toml && cat /run/bootcaches.toml >/etc/volwatch/bootcaches.toml
sed -i -e 's/^settle *=.*/settle = "2s"/' -e 's/^startup_delay *=.*/startup_delay = "1s"/' /etc/volwatch/volwatch.toml
touch /var/lib/vwtest-hang.stamp
sleep 1
echo hang >/etc/vwtest-hang
echo "# vwtest hang $(date +%s%N)" >>/etc/initramfs-tools/modules
systemctl restart vwatch.service
sleep 8
vw_report hang-running "$(pgrep -c -x sleep -a 2>/dev/null; pgrep -f 'sleep infinity' | wc -l)"
vw_log_dump
echo "VWTEST done" >&3
systemctl poweroff --no-block
STEP
cat >"$VM_RUN/last.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation)"
journalctl -b -1 --no-pager -o short-monotonic -t vrebootgate | sed 's/^/VWLOG previous boot: /' >&3
vw_report gate-ends "$(journalctl -b -1 --no-pager -o cat -t vrebootgate | grep 'shutdown delay ends' | tail -n 1)"
vw_report gate-seconds "$(journalctl -b -1 --no-pager -o cat -t vrebootgate | sed -n 's/.*shutdown delay ends after \([0-9.]*\) s.*/\1/p' | tail -n 1)"
vw_done
STEP

vm_boot "$VM_RUN" "$VM_RUN/change.sh" 1 900
after=$(vm_esp_generation "$VM_RUN" 1)
vm_log "generation before the change $before; at the poweroff request: $(vm_result generation-at-poweroff); after power-off $after"
[[ -n $after && $after -gt $before ]] || vm_fail "power-off did not wait for the ESP sync: ESP 1 at generation '$after', was $before"
vm_expect "ESP 2 holds the new generation after power-off" "$(vm_esp_generation "$VM_RUN" 2)" "$after"
vm_esp_cat "$VM_RUN" 2 "/volwatch/slot-$(vm_esp_cat "$VM_RUN" 2 /volwatch/current | sed -n 's/^slot=//p')/MANIFEST.json" |
    grep -q "\"generation\": *$after" || vm_fail "ESP 2's live slot has no manifest of generation $after"

vm_boot "$VM_RUN" "$VM_RUN/after.sh" 1 900
vm_expect "the next boot runs the new generation" "$(vm_result booted)" "$after"
vm_expect "the previous boot's journal has both shutdown-delay events" "$(vm_result previous-boot-gate)" 2
vm_expect "the next boot is clean (vcheck --all)" "$(vm_result vcheck-exit)" 0
[[ $(vm_result hang-running) != "0" ]] || vm_fail "the hanging rebuilder was not running before power-off"
hang_boot=$VM_LAST

vm_boot "$VM_RUN" "$VM_RUN/last.sh" 1
vm_expect "a hung rebuild leaves the previous set booting" "$(vm_result booted)" "$after"
vm_expect "ESP 2 still holds the previous set" "$(vm_esp_generation "$VM_RUN" 2)" "$after"
ends=$(vm_result gate-ends)
[[ $ends == *"without the reboot lock"* ]] || vm_fail "the gate did not end at its bound: '$ends'"
seconds=$(vm_result gate-seconds)
vm_log "the gate held power-off for $seconds s (bound 20 s); power-off boot took $(cat "$hang_boot/seconds") s"
# The gate's own measure of its wait: the bound plus its 10 s for stopping rebuilds at most.
[[ ${seconds%.*} -le 30 ]] || vm_fail "the gate held power-off $seconds s, more than its 20 s bound and 10 s stop"
