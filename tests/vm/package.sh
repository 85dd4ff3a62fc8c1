#!/usr/bin/env bash
# Scenario "package transaction": a .deb built here (a kernel module with an
# old mtime, a shared library with a soname, an initramfs hook writing a
# marker with the package version) installed with dpkg -i in the guest while
# the dpkg frontend lock is held as apt holds it: vwatch defers, then starts
# exactly one rebuild; depmod, ldconfig and update-initramfs run; both ESPs get
# the new generation; the next boot runs the initramfs with the marker.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vm_new_synced_run package
before=$(vm_esp_generation "$VM_RUN" 1)
kver=$(cat "$VM_WORK/golden/kver")
version=1.0+vwtest$(date +%s)

pkg=$VM_RUN/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/usr/lib/modules/$kver/extra" "$pkg/usr/lib/x86_64-linux-gnu" \
    "$pkg/usr/share/initramfs-tools/hooks" "$pkg/usr/share/initramfs-tools/scripts/init-bottom"
# A real module file (the kernel's own dummy.ko under another name), dated 2001.
cp "$(ls -d "$VM_CACHE"/*/root/usr/lib/modules/"$kver"/kernel/drivers/net/dummy.ko | head -n 1)" \
    "$pkg/usr/lib/modules/$kver/extra/vwtest_dummy.ko"
touch -d 2001-01-01 "$pkg/usr/lib/modules/$kver/extra/vwtest_dummy.ko"
echo 'int vwtest_answer(void) { return 42; }' >"$pkg/vwtest.c"
cc -shared -fPIC -Wl,-soname,libvwtest.so.1 -o "$pkg/usr/lib/x86_64-linux-gnu/libvwtest.so.1.0.0" "$pkg/vwtest.c"
rm "$pkg/vwtest.c"
cat >"$pkg/usr/share/initramfs-tools/hooks/vwtest" <<HOOK
#!/bin/sh
[ "\$1" = prereqs ] && exit 0
mkdir -p "\$DESTDIR/etc"
echo "$version" >"\$DESTDIR/etc/vwtest-marker"
HOOK
cat >"$pkg/usr/share/initramfs-tools/scripts/init-bottom/vwtest" <<'SCRIPT'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
# No cp in a busybox-less initramfs (klibc): the shell copies the line.
read -r marker </etc/vwtest-marker && echo "$marker" >/run/vwtest-marker
SCRIPT
chmod 755 "$pkg/usr/share/initramfs-tools/hooks/vwtest" "$pkg/usr/share/initramfs-tools/scripts/init-bottom/vwtest"
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: vwtest
Version: $version
Architecture: amd64
Maintainer: volwatch tests <tests@volwatch.invalid>
Description: volwatch VM test package
 A module, a library and an initramfs hook.
CONTROL
dpkg-deb --root-owner-group -b "$pkg" "$VM_RUN/vwtest.deb" >/dev/null

cat >"$VM_RUN/install.sh" <<'STEP'
sed -i -e 's/^settle *=.*/settle = "2s"/' -e 's/^startup_delay *=.*/startup_delay = "1s"/' /etc/volwatch/volwatch.toml
systemctl restart vwatch.service
sleep 5
since=$(date +%s)
vw_report generation-before "$(vw_pointer /boot/efi)"
# As apt does: hold the frontend lock over the whole transaction (dpkg -i and
# some more time), dpkg told by DPKG_FRONTEND_LOCKED that it is held.
rc=0
flock /var/lib/dpkg/lock-frontend sh -c 'DPKG_FRONTEND_LOCKED=1 dpkg -i /run/vwtest/vwtest.deb && sleep 15' \
    >/run/dpkg.out 2>&1 || rc=$?
released=$(date +%s)
sed 's/^/VWLOG dpkg: /' /run/dpkg.out >&3
vw_report dpkg-exit "$rc"
# Wait (bounded) for vwatch's rebuild and its end.
for _ in $(seq 1 120); do
    if journalctl -u vwatch --since "@$since" -o cat --no-pager | grep -q 'cache updated by vrebuild\|update failed'; then break; fi
    sleep 5
done
sleep 10   # a second rebuild (issue 12) would be launched within the settle time
journalctl -u vwatch --since "@$since" -o short-unix --no-pager | sed 's/^/VWLOG vwatch: /' >&3
vw_report deferred "$(journalctl -u vwatch --since "@$since" -o cat --no-pager | grep -c 'rebuild deferred: /var/lib/dpkg/lock-frontend is held')"
vw_report launches "$(journalctl -u vwatch --since "@$since" -o cat --no-pager | grep -c '; started ')"
first=$(journalctl -u vwatch --since "@$since" -o short-unix --no-pager | grep '; started ' | head -n 1 | cut -d' ' -f1 | cut -d. -f1)
vw_report launched-after-release "$([ -n "$first" ] && [ "$first" -ge "$released" ] && echo yes || echo "no ($first < $released)")"
vw_report depmod "$(grep -c 'extra/vwtest_dummy.ko' /usr/lib/modules/"$(uname -r)"/modules.dep)"
vw_report ldconfig "$(ldconfig -p | grep -c 'libvwtest.so.1 ')"
vw_report initramfs "$(lsinitramfs "$(readlink -f /initrd.img)" | grep -c 'etc/vwtest-marker')"
rc=0; vcheck --all >/run/vcheck.out 2>&1 || rc=$?
sed 's/^/VWLOG vcheck: /' /run/vcheck.out >&3
vw_report vcheck-exit "$rc"
vw_report esp1 "$(vw_pointer /boot/efi)"
vw_report esp2 "$(vw_pointer /boot/efi2)"
vw_done
STEP
cat >"$VM_RUN/reboot.sh" <<'STEP'
vw_report booted "$(vw_cmdline generation)"
vw_report marker "$(cat /run/vwtest-marker 2>&1)"
vw_done
STEP

VM_FILES=("$VM_RUN/vwtest.deb")
vm_boot "$VM_RUN" "$VM_RUN/install.sh" 1 1800
VM_FILES=()
vm_expect "dpkg -i exit status" "$(vm_result dpkg-exit)" 0
[[ $(vm_result deferred) -ge 1 ]] || vm_fail "vwatch never logged the deferral while dpkg held its lock"
vm_log "ok: vwatch deferred while the dpkg lock was held"
vm_expect "the rebuild started after the lock was released" "$(vm_result launched-after-release)" yes
vm_expect "depmod ran (modules.dep lists the module)" "$(vm_result depmod)" 1
vm_expect "ldconfig ran (the soname is in the cache)" "$(vm_result ldconfig)" 1
vm_expect "update-initramfs ran (the marker is in /initrd.img)" "$(vm_result initramfs)" 1
vm_expect "vcheck --all after the transaction" "$(vm_result vcheck-exit)" 0
esp1=$(vm_result esp1)
vm_expect "ESP 2 holds ESP 1's generation" "$(vm_result esp2 | cut -d' ' -f1)" "${esp1% *}"
[[ ${esp1% *} -gt $before ]] || vm_fail "the ESPs did not get a new generation (${esp1% *}, was $before)"
launches=$(vm_result launches)
install_boot=$VM_LAST

vm_boot "$VM_RUN" "$VM_RUN/reboot.sh" 1
vm_expect "the reboot runs the new generation" "$(vm_result booted)" "${esp1% *}"
vm_expect "the booted initramfs carries the package's marker" "$(vm_result marker)" "$version"

if [[ $launches != 1 ]]; then
    VM_LAST=$install_boot
    vm_fail "exactly one rebuild per transaction: vwatch started $launches"
fi
vm_log "ok: exactly one rebuild for the transaction"
