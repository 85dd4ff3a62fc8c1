# tests/vm/lib.sh: the virtual-machine acceptance suite's library (issue 10).
# Sourced by tests/vm/run.sh and the scenario files tests/vm/*.sh. Builds a
# cached Debian 12 base root, assembles per-run disk images with the project's
# .deb, boots them under QEMU (OVMF, standalone GRUB on two vfat ESPs) and
# reads the guest's VWTEST lines from a second serial port.
# shellcheck shell=bash

VM_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_CACHE=${VOLWATCH_VM_CACHE:-/var/cache/volwatch-vm}
VM_BOOT_TIMEOUT=${VOLWATCH_VM_BOOT_TIMEOUT:-600}
VM_SUITE=bookworm
# Only what the image and the scenarios need; minbase adds dpkg, apt, coreutils.
# systemd-boot brings systemd-bless-boot, which marks a counted entry good.
VM_PACKAGES=(systemd-sysv udev linux-image-amd64 initramfs-tools kmod zstd dosfstools
             util-linux mtools e2fsprogs procps grub-common systemd-boot)
# The modules the VM boots with: its initramfs holds these and nothing else.
VM_MODULES=(virtio_pci virtio_blk ext4 vfat nls_cp437 nls_ascii nls_utf8 crc32c_generic)

vm_log() { printf 'vm: %s\n' "$*" >&2; }
vm_die() { printf 'vm: FAIL: %s\n' "$*" >&2; exit 1; }
vm_skip() { printf '\nvm: SKIPPED: %s\n\n' "$*"; exit 0; }

# The mirror is the machine's own apt configuration, read at run time.
vm_mirror() {
    local uri
    uri=$(awk '/^URIs:/ && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
    if [[ -z $uri ]]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
    fi
    [[ -n $uri ]] || return 1
    printf '%s\n' "$uri"
}

# The cache key: this builder's own text plus the package and module lists.
vm_base_key() {
    { declare -f vm_build_base vm_mirror; printf '%s\n' "${VM_PACKAGES[@]}" "${VM_MODULES[@]}" "$VM_SUITE"; } |
        sha256sum | cut -c1-16
}

# vm_build_base: a debootstrap root with a small initramfs, cached. Prints its path.
vm_build_base() {
    local key dir mirror tmp
    key=$(vm_base_key)
    dir=$VM_CACHE/$key
    if [[ -f $dir/done ]]; then printf '%s\n' "$dir"; return 0; fi
    mirror=$(vm_mirror) || vm_die "no Debian mirror in /etc/apt/sources.list{,.d}"
    mkdir -p "$VM_CACHE"
    tmp=$VM_CACHE/$key.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local start=$SECONDS
    vm_log "building the base root in $dir (debootstrap $VM_SUITE minbase)"
    # The small initramfs configuration goes in before the kernel's
    # postinst builds the first one: natively, MODULES=list, zstd -1.
    mkdir -p "$tmp/root/etc/initramfs-tools/conf.d"
    printf 'MODULES=list\nCOMPRESS=zstd\nCOMPRESSLEVEL=1\n' >"$tmp/root/etc/initramfs-tools/conf.d/volwatch-vm.conf"
    printf '%s\n' "${VM_MODULES[@]}" >"$tmp/root/etc/initramfs-tools/modules"
    local include
    include=$(IFS=,; echo "${VM_PACKAGES[*]}")
    if ! debootstrap --variant=minbase --include="$include" "$VM_SUITE" "$tmp/root" "$mirror" \
            >"$tmp/debootstrap.log" 2>&1; then
        tail -30 "$tmp/debootstrap.log" >&2
        vm_die "debootstrap failed (log: $tmp/debootstrap.log)"
    fi
    # debootstrap's dpkg may have replaced the modules file with the package's.
    printf '%s\n' "${VM_MODULES[@]}" >"$tmp/root/etc/initramfs-tools/modules"
    local kver
    kver=$(ls "$tmp/root/usr/lib/modules")
    [[ $(wc -w <<<"$kver") -eq 1 ]] || vm_die "expected one kernel in the base root, found: $kver"
    chroot "$tmp/root" update-initramfs -u -k "$kver" >>"$tmp/debootstrap.log" 2>&1 ||
        vm_die "update-initramfs in the base root failed (log: $tmp/debootstrap.log)"
    # Persistent journal, serial login-free: the guest is driven by vwtest.service.
    mkdir -p "$tmp/root/var/log/journal"
    printf 'root:x:0:0:root:/root:/bin/bash\n' >/dev/null
    echo vwvm >"$tmp/root/etc/hostname"
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
    printf '%s\n' "$kver" >"$tmp/kver"
    printf '%s\n' "$((SECONDS - start))" >"$tmp/build-seconds"
    touch "$tmp/done"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    vm_log "base root built in $((SECONDS - start)) s"
    printf '%s\n' "$dir"
}

# ---------------------------------------------------------------- the image
# Fixed identities, so the GRUB configs and fstab can name them.
VM_ROOT_UUID=5d2c8a1e-4b7f-4e21-9c3a-0f1e2d3c4b5a
VM_ESP_ID=(A1B2C3D4 B1B2C3D4)                 # mkfs.vfat -i
VM_ESP_UUID=(A1B2-C3D4 B1B2-C3D4)              # as blkid and GRUB spell them
VM_ESP_OFFSET=$((1024 * 1024))                 # the ESP is partition 1 of each disk, at 1 MiB
VM_ESP_MB=160
VM_ROOT_MB=1800

# The volume config of the VM's root: examples/debian/bootcaches.toml with the
# VM's kernel version and only the caches whose tools the VM has.
vm_volume_config() {
    local kver=$1
    python3 - "$VM_SRC/examples/debian/bootcaches.toml" "$kver" <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("6.1.0-18-amd64", sys.argv[2])
head, *blocks = re.split(r"(?m)^(?=\[\[cache\]\]|\[helpers\])", text)
keep = [b for b in blocks if not re.search(r'(?m)^name\s*=\s*"(grub\.cfg|mime|fontconfig)"', b)]
print(head + "".join(keep), end="")
PY
}

# The host config: examples/debian/volwatch.toml, whose [[helpers]] table is
# examples/two-esp/host.toml's (both ESPs of the VM).
vm_host_config() {
    cat "$VM_SRC/examples/debian/volwatch.toml"
}

# The GRUB script embedded in the standalone BOOTX64.EFI of ESP number $1:
# what the package's own generator (42_volwatch --standalone, from the root
# at $2 the .deb was installed into) writes for this ESP, with the fallback
# entry used before the first sync, and the generation, slot and ESP on the
# kernel command line (none and none in the fallback entry).
vm_grub_cfg() {
    local esp=$1 root=$2 defaults
    defaults=$(mktemp)
    printf '%s\n' GRUB_TIMEOUT=0 GRUB_DISTRIBUTOR=Debian 'GRUB_CMDLINE_LINUX="console=ttyS0,115200"' \
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet systemd.show_status=0"' >"$defaults"
    VOLWATCH_GRUB_DEFAULTS=$defaults "$root/etc/grub.d/42_volwatch" --standalone "UUID=${VM_ESP_UUID[esp]}" \
        --append "root=UUID=$VM_ROOT_UUID volwatch.generation=\$generation volwatch.slot=\$slot volwatch.esp=${VM_ESP_UUID[esp]}" \
        --fallback-kernel /fallback/vmlinuz --fallback-initrd /fallback/initrd.img || { rm -f "$defaults"; return 1; }
    rm -f "$defaults"
}

# The guest side: vwtest.service runs this at every boot. It unpacks the
# config disk (a tar: guest functions and this boot's step) and runs the step.
vm_guest_runner() {
    cat <<'RUN'
#!/bin/bash
# Written by tests/vm/lib.sh: runs this boot's step from the config disk.
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null || true
rm -rf /run/vwtest && mkdir -p /run/vwtest
if ! tar -xf /dev/disk/by-id/virtio-vwcfg -C /run/vwtest; then
    echo "VWTEST error no-config-disk" >&3; systemctl poweroff --no-block; exit 1
fi
cd /run/vwtest || exit 1
source ./guest.sh
echo "VWTEST boot-cmdline $(cat /proc/cmdline)" >&3
# The step begins: a guest kernel lockup before this line is the emulator's
# (vm_lockup_verdict retries that boot), one after it may be ours.
echo "VWTEST step-start" >&3
source ./step.sh
RUN
}

vm_guest_unit() {
    cat <<'UNIT'
[Unit]
Description=volwatch VM acceptance test step
After=multi-user.target vwatch.service volwatch-rebootgate.service
[Service]
Type=oneshot
ExecStart=/usr/local/lib/vwtest/run
TimeoutStartSec=infinity
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
UNIT
}

# Functions the guest's steps call (shipped as text with declare -f).
vw_report() { echo "VWTEST $*" >&3; }
vw_log_dump() {   # the guest's own log lines, for a failing scenario
    journalctl -b "${1:-0}" --no-pager -o short-monotonic -u vwatch -u volwatch-rebootgate -t vrebuild \
        -t vwatch -t vrebootgate 2>&1 | tail -n 80 | sed 's/^/VWLOG /' >&3
}
vw_pointer() {    # vw_pointer /boot/efi -> generation slot of the live pointer
    local g s
    g=$(sed -n 's/^generation=//p' "$1/volwatch/current" 2>/dev/null)
    s=$(sed -n 's/^slot=//p' "$1/volwatch/current" 2>/dev/null)
    echo "${g:-none} ${s:-none}"
}
vw_cmdline() { tr ' ' '\n' </proc/cmdline | sed -n "s/^volwatch\.$1=//p"; }
vw_done() { vw_log_dump; echo "VWTEST done" >&3; sync; systemctl poweroff --no-block; exit 0; }

# vm_assemble OUTDIR: the golden disks of this run (disk1.img, disk2.img).
vm_assemble() {
    local out=$1 deb=$2 base kver root
    base=$(vm_build_base) || return 1
    kver=$(cat "$base/kver")
    local start=$SECONDS
    mkdir -p "$out"
    root=$out/root
    rm -rf "$root"
    cp -a "$base/root" "$root"
    cp "$deb" "$root/tmp/volwatch.deb"
    chroot "$root" dpkg -i /tmp/volwatch.deb >"$out/assemble.log" 2>&1 || { cat "$out/assemble.log" >&2; vm_die "dpkg -i volwatch.deb failed"; }
    rm "$root/tmp/volwatch.deb"
    mkdir -p "$root/etc/volwatch" "$root/boot/efi" "$root/boot/efi2" "$root/usr/local/lib/vwtest"
    vm_host_config >"$root/etc/volwatch/volwatch.toml"
    vm_volume_config "$kver" >"$root/etc/volwatch/bootcaches.toml"
    cat >"$root/etc/fstab" <<FSTAB
UUID=$VM_ROOT_UUID / ext4 errors=remount-ro 0 1
UUID=${VM_ESP_UUID[0]} /boot/efi vfat umask=0077 0 2
UUID=${VM_ESP_UUID[1]} /boot/efi2 vfat umask=0077 0 2
FSTAB
    vm_guest_runner >"$root/usr/local/lib/vwtest/run"
    chmod 755 "$root/usr/local/lib/vwtest/run"
    vm_guest_unit >"$root/etc/systemd/system/vwtest.service"
    echo 'root::0:0:root:/root:/bin/bash' >/dev/null
    # Enabled the way the README tells a user to.
    chroot "$root" systemctl enable vwatch.service volwatch-rebootgate.service >>"$out/assemble.log" 2>&1
    chroot "$root" systemctl enable vwtest.service >>"$out/assemble.log" 2>&1
    chroot "$root" systemctl mask getty@tty1.service serial-getty@ttyS0.service >>"$out/assemble.log" 2>&1 || true
    # Disk 1: ESP + root; disk 2: ESP.
    local i img esp
    for i in 0 1; do
        img=$out/disk$((i + 1)).img
        rm -f "$img"
        if [[ $i == 0 ]]; then truncate -s $((VM_ESP_MB + VM_ROOT_MB + 4))M "$img"; else truncate -s $((VM_ESP_MB + 4))M "$img"; fi
        {
            echo "label: gpt"
            echo "start=2048, size=$((VM_ESP_MB * 2048)), type=U, name=ESP$((i + 1))"
            if [[ $i == 0 ]]; then echo "start=$(( (VM_ESP_MB + 1) * 2048 )), size=$((VM_ROOT_MB * 2048)), type=L, name=root"; fi
        } | sfdisk -q "$img" >>"$out/assemble.log" 2>&1 || vm_die "sfdisk $img failed"
        esp=$out/esp$((i + 1)).fat
        rm -f "$esp"
        mkfs.vfat -F 32 -s 1 -S 512 -i "${VM_ESP_ID[i]}" -n "ESP$((i + 1))" -C "$esp" $((VM_ESP_MB * 1024)) >>"$out/assemble.log" 2>&1 ||
            vm_die "mkfs.vfat failed"
        vm_grub_cfg "$i" "$root" >"$out/grub$((i + 1)).cfg" || vm_die "42_volwatch --standalone failed"
        grub-script-check "$out/grub$((i + 1)).cfg" || vm_die "grub-script-check refuses 42_volwatch --standalone's output"
        grub-mkstandalone -O x86_64-efi --modules="part_gpt fat search search_fs_uuid linux normal configfile test echo" \
            --locales= --themes= --fonts= -o "$out/BOOTX64.EFI" "boot/grub/grub.cfg=$out/grub$((i + 1)).cfg" ||
            vm_die "grub-mkstandalone failed"
        mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/fallback
        mcopy -i "$esp" "$out/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
        mcopy -i "$esp" "$root/boot/vmlinuz-$kver" ::/fallback/vmlinuz
        mcopy -i "$esp" "$root/boot/initrd.img-$kver" ::/fallback/initrd.img
        dd if="$esp" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
        rm -f "$esp" "$out/BOOTX64.EFI"
    done
    local rootimg=$out/root.ext4
    rm -f "$rootimg"
    mkfs.ext4 -q -F -U "$VM_ROOT_UUID" -L root -d "$root" "$rootimg" "${VM_ROOT_MB}M" >>"$out/assemble.log" 2>&1 ||
        vm_die "mkfs.ext4 -d failed"
    dd if="$rootimg" of="$out/disk1.img" bs=1M seek=$((VM_ESP_MB + 1)) conv=notrunc,sparse status=none
    rm -rf "$rootimg" "$root"
    echo "$kver" >"$out/kver"
    vm_log "image assembled in $((SECONDS - start)) s (kernel $kver)"
}

# ---------------------------------------------------------------- booting
vm_accel() { if [[ -r /dev/kvm && -w /dev/kvm ]]; then echo kvm; else echo tcg; fi; }

# ------------------------------------------------ guest kernel lockups (TCG)
# Under TCG the emulator has hung both vCPUs of a guest in early boot, before
# any volwatch step ran: the console then shows soft lockups and RCU stalls
# every 30 s until the boot's time limit kills QEMU (kept in
# tests/vm/fixtures/console-soft-lockup.log, power-loss, 2026-12-06).
VM_LOCKUP_RE='watchdog: BUG: soft lockup|rcu: INFO: rcu_[a-z]+ (self-)?detected stall'

# vm_lockup_verdict CONSOLE RESULTS: "retry" when the console log shows a guest
# kernel soft lockup or RCU stall and the guest had not begun its step (no
# "VWTEST step-start" line in RESULTS, the second serial port), "fail" when it
# had; nothing when the console shows no lockup.
vm_lockup_verdict() {
    grep -qaE "$VM_LOCKUP_RE" "$1" 2>/dev/null || return 0
    if grep -qa 'VWTEST step-start' "$2" 2>/dev/null; then echo fail; else echo retry; fi
}

# vm_lockup_line CONSOLE: the console's first lockup line, for the log.
vm_lockup_line() {
    grep -aE -m1 "$VM_LOCKUP_RE" "$1" | tr -d '\r' | sed 's/^ *//'
}

# vm_kill_qemu: SIGKILL to QEMU (the child of timeout(1)), then to timeout.
vm_kill_qemu() {
    pkill -KILL -P "$VM_QEMU_PID" qemu-system-x86 || true
    kill -KILL "$VM_QEMU_PID" 2>/dev/null || true
    wait "$VM_QEMU_PID" 2>/dev/null || true
}

# vm_watch_boot [UNTIL]: watches the running boot VM_LAST (QEMU under
# timeout(1), pid VM_QEMU_PID) and sets VM_WATCH: "exited" when QEMU has exited
# (its status in VM_QEMU_RC); "until" when the guest reported a line matching
# the grep pattern UNTIL (QEMU left running); "retry" or "fail" as
# vm_lockup_verdict says, QEMU killed at once.
vm_watch_boot() {
    local until=${1:-}
    while kill -0 "$VM_QEMU_PID" 2>/dev/null; do
        VM_WATCH=$(vm_lockup_verdict "$VM_LAST/console.log" "$VM_LAST/results.log")
        if [[ -n $VM_WATCH ]]; then vm_kill_qemu; return 0; fi
        if [[ -n $until ]] && grep -qa "$until" "$VM_LAST/results.log" 2>/dev/null; then
            VM_WATCH=until
            return 0
        fi
        sleep 0.5
    done
    VM_WATCH=exited
    VM_QEMU_RC=0
    wait "$VM_QEMU_PID" || VM_QEMU_RC=$?
}

# vm_boot RUNDIR STEPFILE [BOOTDISK] [TIMEOUT]: one boot, running STEPFILE in
# the guest; returns when QEMU exits. BOOTDISK 1 or 2 picks the ESP the
# firmware boots from. Output: RUNDIR/boot-N/{console,results}.log; the
# variable VM_LAST names that directory. With VM_UNTIL=PATTERN it returns,
# QEMU left running (VM_QEMU_PID), once the guest reports a line matching
# PATTERN. With VM_REBOOT=1 a reboot of the guest (a kernel panic with
# panic=N) restarts the firmware instead of ending QEMU.
#
# A guest kernel lockup before the step began (vm_lockup_verdict) is the
# emulator's: that boot is killed, kept, logged, counted in VM_RETRY_LOG
# (run.sh's summary) and booted again, once, with the same disks and step.
# This is safe: to the disks, the killed boot is a power cut in early boot,
# which the product must survive anyway (power-loss.sh cuts power mid-sync).
# vwatch may already have started, so a lockup of ours before the step is
# retried too, but it fails the scenario when it happens again. A lockup after
# the step began fails the scenario at once.
VM_BOOTS=0
VM_FILES=()   # more files for the guest, in its /run/vwtest
vm_boot() {
    local run=$1 step=$2 bootdisk=${3:-1} timeout=${4:-$VM_BOOT_TIMEOUT} attempt start
    for attempt in 1 2; do
        vm_start_qemu "$run" "$step" "$bootdisk" "$timeout"
        start=$SECONDS
        vm_watch_boot "${VM_UNTIL:-}"
        echo "$((SECONDS - start))" >"$VM_LAST/seconds"
        case $VM_WATCH in
        retry)
            (( attempt == 1 )) || vm_fail "boot $VM_BOOTS: guest kernel lockup before the step began, on the retry" \
                "too (emulator): '$(vm_lockup_line "$VM_LAST/console.log")'"
            vm_log "boot $VM_BOOTS: guest kernel lockup before the step began (emulator), retrying once;" \
                "after $((SECONDS - start)) s: '$(vm_lockup_line "$VM_LAST/console.log")'; console kept in $VM_LAST/console.log"
            echo "$VM_LAST" >>"${VM_RETRY_LOG:-/dev/null}"
            continue ;;
        fail)
            vm_fail "boot $VM_BOOTS: guest kernel lockup after the step began (not retried: it may be ours):" \
                "'$(vm_lockup_line "$VM_LAST/console.log")'" ;;
        esac
        break
    done
    if [[ -n ${VM_UNTIL:-} ]]; then
        [[ $VM_WATCH == until ]] && return 0
        [[ $VM_QEMU_RC != 137 ]] || vm_fail "boot $VM_BOOTS timed out after $timeout s before the guest reported '$VM_UNTIL'"
        vm_fail "the guest stopped (qemu exit $VM_QEMU_RC) before it reported '$VM_UNTIL'"
    fi
    local rc=$VM_QEMU_RC
    vm_log "boot $VM_BOOTS ($(basename "$step"), disk $bootdisk): $((SECONDS - start)) s, qemu exit $rc"
    if [[ $rc == 137 ]]; then vm_fail "boot $VM_BOOTS timed out after $timeout s"; fi
    [[ $rc == 0 ]] || vm_fail "qemu exited with $rc"
    grep -q '^VWTEST done' <(tr -d '\r' <"$VM_LAST/results.log") || vm_fail "the guest did not finish its step"
}

# vm_retried_note N: the summary's note of N boots retried after a guest
# kernel lockup before their step (vm_boot); nothing when N is 0.
vm_retried_note() {
    (( $1 > 0 )) || return 0
    if (( $1 == 1 )); then printf ' (1 boot retried: guest kernel lockup before its step)'
    else printf ' (%s boots retried: guest kernel lockup before their step)' "$1"; fi
}

# vm_start_qemu RUNDIR STEPFILE BOOTDISK TIMEOUT: a new boot directory
# (VM_LAST) for STEPFILE and QEMU started in the background (VM_QEMU_PID).
vm_start_qemu() {
    local run=$1 step=$2 bootdisk=$3 timeout=$4
    VM_BOOTS=$((VM_BOOTS + 1))
    VM_LAST=$run/boot-$VM_BOOTS
    mkdir -p "$VM_LAST/cfg"
    declare -f vw_report vw_log_dump vw_pointer vw_cmdline vw_done >"$VM_LAST/cfg/guest.sh"
    cp "$step" "$VM_LAST/cfg/step.sh"
    local extra
    for extra in "${VM_FILES[@]}"; do cp "$extra" "$VM_LAST/cfg/"; done
    tar -cf "$VM_LAST/cfg.tar" -C "$VM_LAST/cfg" .
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$VM_LAST/vars.fd"
    local b1=1 b2=2
    if [[ $bootdisk == 2 ]]; then b1=2 b2=1; fi
    VM_QEMU=(timeout --signal=KILL "$timeout" qemu-system-x86_64 -machine q35 -accel "$(vm_accel)" -m 1024 -smp 2
        -display none -monitor none
        -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
        -drive "if=pflash,format=raw,file=$VM_LAST/vars.fd"
        -drive "if=none,id=d1,format=raw,cache=directsync,file=$run/disk1.img" -device "virtio-blk-pci,drive=d1,bootindex=$b1"
        -drive "if=none,id=d2,format=raw,cache=directsync,file=$run/disk2.img" -device "virtio-blk-pci,drive=d2,bootindex=$b2"
        -drive "if=none,id=cfg,format=raw,readonly=on,file=$VM_LAST/cfg.tar" -device virtio-blk-pci,drive=cfg,serial=vwcfg
        -serial "file:$VM_LAST/console.log" -serial "file:$VM_LAST/results.log")
    [[ ${VM_REBOOT:-0} == 1 ]] || VM_QEMU+=(-no-reboot)
    "${VM_QEMU[@]}" >"$VM_LAST/qemu.log" 2>&1 &
    VM_QEMU_PID=$!
}

# vm_result KEY [BOOTDIR]: the value of the last "VWTEST KEY value" line.
vm_result() {
    tr -d '\r' <"${2:-$VM_LAST}/results.log" | sed -n "s/^VWTEST $1 //p" | tail -n 1
}

# A failing scenario shows the guest's own log lines and the console's tail.
vm_fail() {
    printf 'vm: FAIL: %s\n' "$*" >&2
    if [[ -n ${VM_LAST:-} ]]; then
        printf -- '--- guest log (%s) ---\n' "$VM_LAST" >&2
        tr -d '\r' <"$VM_LAST/results.log" 2>/dev/null | grep -v '^VWTEST done' >&2 || true
        printf -- '--- serial console, last 40 lines ---\n' >&2
        tr -d '\r' <"$VM_LAST/console.log" 2>/dev/null | tail -n 40 >&2 || true
    fi
    exit 1
}

# vm_expect WHAT ACTUAL EXPECTED
vm_expect() {
    if [[ $2 == "$3" ]]; then vm_log "ok: $1 ($2)"; else vm_fail "$1: got '$2', expected '$3'"; fi
}

# Reading an ESP from the host (QEMU stopped): vm_esp_pointer RUNDIR N
vm_esp_cat() { mtype -i "$1/disk$2.img@@$VM_ESP_OFFSET" "::$3" 2>/dev/null | tr -d '\r'; }
vm_esp_generation() { vm_esp_cat "$1" "$2" /volwatch/current | sed -n 's/^generation=//p'; }

# vm_new_run NAME [FROM]: a fresh copy of the disks of $VM_WORK/FROM (default
# golden, the assembled image) for one scenario.
vm_new_run() {
    local run=$VM_WORK/$1 from=$VM_WORK/${2:-golden}
    rm -rf "$run"
    mkdir -p "$run"
    cp --sparse=always "$from/disk1.img" "$from/disk2.img" "$run/"
    VM_BOOTS=0
    VM_RUN=$run
}

# The step that syncs both ESPs on a fresh image (boot-sync's first boot).
VM_SYNC_STEP='rc=0; vrebuild / >/run/vrebuild.out 2>&1 || rc=$?
sed "s/^/VWLOG vrebuild: /" /run/vrebuild.out >&3
vw_report vrebuild-exit "$rc"
vw_report esp1 "$(vw_pointer /boot/efi)"
vw_report esp2 "$(vw_pointer /boot/efi2)"
vw_done'

# vm_new_synced_run NAME: like vm_new_run, from disks whose ESPs were synced
# by vrebuild in the guest: boot-sync's end state when it passed, else one
# boot of our own.
vm_new_synced_run() {
    if [[ -f $VM_WORK/boot-sync/passed ]]; then
        vm_new_run "$1" boot-sync
        return 0
    fi
    vm_new_run "$1"
    printf '%s\n' "$VM_SYNC_STEP" >"$VM_RUN/sync.sh"
    vm_boot "$VM_RUN" "$VM_RUN/sync.sh" 1 900
    vm_expect "initial vrebuild / in the guest" "$(vm_result vrebuild-exit)" 0
}

# vm_install_sdboot RUNDIR N: systemd-boot replaces GRUB as the boot loader of
# ESP N (from the host, QEMU stopped): EFI/BOOT/BOOTX64.EFI and a
# loader.conf that boots the default entry at once. The entries are
# volwatch's to write.
vm_install_sdboot() {
    local img="$1/disk$2.img@@$VM_ESP_OFFSET" conf
    conf=$(mktemp)
    printf 'timeout 0\neditor no\nconsole-mode keep\n' >"$conf"
    mcopy -o -i "$img" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI || vm_die "mcopy systemd-boot failed"
    mmd -i "$img" ::/loader 2>/dev/null || true
    mcopy -o -i "$img" "$conf" ::/loader/loader.conf || vm_die "mcopy loader.conf failed"
    rm -f "$conf"
}

# vm_esp_entries RUNDIR N: the entry files of ESP N, one per line, sorted.
vm_esp_entries() {
    mdir -b -i "$1/disk$2.img@@$VM_ESP_OFFSET" ::/loader/entries 2>/dev/null | sed 's|.*/||' | grep '\.conf$' | sort
}

# vm_cut_boot STEP DISK WINDOW LABEL: the power cord. Boots DISK running STEP,
# whose guest loop reports "VWTEST sync-start N" and "VWTEST sync-end N RC";
# once the first sync has started, kills QEMU with SIGKILL at a random instant
# (RANDOM, seeded by the caller) within WINDOW seconds. Sets `landed` to 1
# when the guest's last line was a sync start (the cut fell mid-sync).
vm_cut_boot() {
    local step=$1 disk=$2 window=$3 label=$4 delay
    delay=$((RANDOM % (window * 10)))
    VM_UNTIL='^VWTEST sync-start 1$' vm_boot "$VM_RUN" "$step" "$disk" 900
    local start=$SECONDS
    sleep "$((delay / 10)).$((delay % 10))"
    vm_kill_qemu
    echo "$((SECONDS - start))" >"$VM_LAST/seconds"
    local last
    last=$(tr -d '\r' <"$VM_LAST/results.log" | grep '^VWTEST sync-' | tail -n 1)
    landed=0
    [[ $last == "VWTEST sync-start"* ]] && landed=1
    vm_log "$label: killed QEMU $((delay / 10)).$((delay % 10)) s after the first sync began; last line '$last'"
}


# vm_esp_check_entries RUNDIR N ID: the oracle (tests/cli/helper_check.py
# --entries) on a copy of ESP N's volwatch/ and loader/ made with mtools:
# every entry of ID names a slot sealed with its generation, and the default
# entry names the live set.
vm_esp_check_entries() {
    local dir out rc=0 part
    dir=$(mktemp -d)
    mkdir "$dir/volwatch"
    # Piece by piece: mtools stops a recursive copy at the first broken
    # directory (a spare slot cut mid-write), which must not hide the rest.
    for part in current current.new slot-a slot-b; do
        mcopy -s -n -i "$1/disk$2.img@@$VM_ESP_OFFSET" "::/volwatch/$part" "$dir/volwatch/" 2>/dev/null || true
    done
    mcopy -s -n -i "$1/disk$2.img@@$VM_ESP_OFFSET" ::/loader "$dir/" 2>/dev/null || true
    out=$(python3 "$VM_SRC/tests/cli/helper_check.py" --entries "$3" "$dir") || rc=$?
    vm_log "entries oracle on ESP $2: $out"
    rm -rf "$dir"
    return "$rc"
}

# vm_esp_fsck RUNDIR N LABEL: logs what `fsck.vfat -n` finds on ESP N (a copy
# of the partition; nothing is repaired). After a power cut the dirty bit, the
# free-cluster count and a half-copied file's clusters are expected; a
# directory entry naming a free cluster is the inconsistency that would make
# the kernel refuse the next sync (docs/helpers.md, "The file system itself
# stays consistent"), which the scenario's next sync then shows.
vm_esp_fsck() {
    local img=$1/disk$2.img copy start size findings
    read -r start size < <(sfdisk -d "$img" 2>/dev/null | sed -n 's/^[^ ]*1 : start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2/p')
    [[ -n $start ]] || { vm_log "$3: fsck.vfat of ESP $2: no partition table"; return 0; }
    copy=$(mktemp)
    dd if="$img" of="$copy" bs=512 skip="$start" count="$size" status=none
    findings=$(fsck.vfat -n "$copy" 2>&1 | sed -n '2,$p' | grep -v -e '^Leaving filesystem unchanged' -e '^ *Auto-correcting' \
        -e '^ *Automatically removing' -e '^ *Not automatically' -e '^This is mostly harmless' -e '^ *[0-9]*:[0-9a-f]*/[0-9a-f]*$' \
        -e "^$copy:" | tr '\n' ' ' || true)   # fsck.vfat -n exits 1 when it finds anything
    rm -f "$copy"
    vm_log "$3: fsck.vfat -n of ESP $2: ${findings:-clean}"
}

