#!/usr/bin/env bash
# Installs what is missing, builds, and runs volwatch's main job on a
# throwaway sandbox volume under a temporary directory: its own host config
# and lock directory, so no root is needed and nothing outside it changes.
#   scripts/demo.sh [--keep]     --keep leaves the sandbox for you to explore
# With VOLWATCH_DEMO_BIN=DIR it uses the programs in DIR and installs and
# builds nothing (tests/cli/demo.bats). It exits 1 if a step did not have
# the outcome it shows.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

keep=0
[[ "${1:-}" == --keep ]] && keep=1

if [[ -n ${VOLWATCH_DEMO_BIN:-} ]]; then
    bin=$VOLWATCH_DEMO_BIN
else
    scripts/deps.sh build
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target programs >/dev/null
    bin=$top/build/tools
fi

sandbox=$(mktemp -d "${TMPDIR:-/tmp}/volwatch-demo.XXXXXX")
if [[ $keep -eq 0 ]]; then trap 'rm -rf "$sandbox"' EXIT; fi
vol=$sandbox/vol
mkdir -p "$vol/etc/volwatch" "$vol/usr/lib/modules/6.1.0-18/kernel/drivers" "$vol/boot" "$sandbox/locks" \
         "$sandbox/esp1" "$sandbox/esp2"
echo "vmlinuz 6.1.0-18" > "$vol/boot/vmlinuz-6.1.0-18"
echo "e1000e driver" > "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/e1000e.ko"
echo "initramfs-tools config" > "$vol/usr/lib/modules/6.1.0-18/modules.order"

cat > "$sandbox/volwatch.toml" <<TOML
# The host config: trusted. It alone decides what may run.
lock_dir = "$sandbox/locks"
discover = false
volumes  = ["$vol"]

[rebuilders]
initramfs = { argv = ["tar", "-C", "{root}", "-czf", "{product}", "usr/lib/modules"], timeout = "1m" }

# Two ESPs (a RAID1 pair): each gets a crash-consistent copy of the boot files.
[[helpers]]
volume  = "$vol"
targets = ["$sandbox/esp1", "$sandbox/esp2"]
TOML
cat > "$vol/etc/volwatch/bootcaches.toml" <<'TOML'
# The volume config: lives on the volume, untrusted; it only names a rebuilder.
version = 1

[[cache]]
name    = "initramfs"
sources = ["usr/lib/modules"]
product = "boot/initrd.img"
depth   = "deep"
rebuild = "initramfs"

[helpers]
files = ["boot/vmlinuz-6.1.0-18", "boot/initrd.img"]
TOML
export VOLWATCH_CONFIG=$sandbox/volwatch.toml

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
show() { printf '$ %s\n' "$*"; "$@" || printf '(exit status %d)\n' "$?"; }
failed=0
# expect STATUS CMD...: CMD must exit with STATUS, or the demo fails at the end.
expect() {
    local want=$1 got=0
    shift
    "$@" >/dev/null 2>&1 || got=$?
    if [[ $got -ne $want ]]; then
        printf 'demo: expected exit status %d from %s, got %d\n' "$want" "$*" "$got" >&2
        failed=1
    fi
}

step "A sandbox volume at $vol, with host config $VOLWATCH_CONFIG"
step "Before the first build the product is missing"
show "$bin/vcheck" "$vol"

step "What vrebuild would do (--dry-run changes nothing)"
show "$bin/vrebuild" --dry-run "$vol"

step "Build the cache and copy the boot files to both helpers"
show "$bin/vrebuild" "$vol"
show "$bin/vcheck" "$vol"
expect 0 "$bin/vcheck" -q "$vol"

step "A package manager installs a new module (with an old mtime, as dpkg and tar do)"
echo "new driver" > "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/igc.ko"
touch -d "2024-01-01" "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/igc.ko"
show "$bin/vcheck" "$vol"
expect 1 "$bin/vcheck" -q "$vol"

step "The same report as JSON, for scripts"
show "$bin/vcheck" --json "$vol"

step "And for Prometheus' node_exporter textfile collector (first lines)"
"$bin/vcheck" --format=prometheus "$vol" | grep -E '^volwatch_(volume|cache)_stale' || true

step "Rebuild: the stale cache is rebuilt under the volume lock, then both helpers get the new set"
show "$bin/vrebuild" "$vol"
show "$bin/vcheck" "$vol"
printf '$ ls %s/esp1/volwatch\n' "$sandbox"; ls "$sandbox/esp1/volwatch"
printf '$ cat %s/esp1/volwatch/current\n' "$sandbox"; cat "$sandbox/esp1/volwatch/current"

step "The watcher: vwatch notices a change, lets it settle, and launches vrebuild by itself"
"$bin/vwatch" --settle 500ms --startup-delay 0 --no-discover --log-level info >"$sandbox/vwatch.log" 2>&1 &
watcher=$!
for _ in $(seq 100); do grep -q "ready" "$sandbox/vwatch.log" 2>/dev/null && break; sleep 0.1; done
printf '$ echo "wifi driver" > .../kernel/drivers/iwlwifi.ko\n'
echo "wifi driver" > "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/iwlwifi.ko"
for _ in $(seq 150); do "$bin/vcheck" -q "$vol" && break; sleep 0.1; done
kill "$watcher"; wait "$watcher" 2>/dev/null || true
printf '$ cat vwatch.log\n'; cat "$sandbox/vwatch.log"
show "$bin/vcheck" "$vol"
expect 0 "$bin/vcheck" -q "$vol"

step "A simulated shutdown: a kernel module changes, then the shutdown hook runs the gate"
echo "late driver" > "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/r8169.ko"
show "$bin/vcheck" "$vol"
sleep 600 &   # stands in for the shutdown script that will own the reboot lock
shutdown_pid=$!
show "$bin/vrebootgate" --wait=1m --owner "$shutdown_pid"
show "$bin/vcheck" "$vol"
expect 0 "$bin/vcheck" -q "$vol"
step "While the reboot lock is held, no new volume lock is granted (exit 5)"
show "$bin/vrebuild" --force "$vol"
expect 5 "$bin/vrebuild" --force "$vol"
show "$bin/vrebootgate" --status
kill "$shutdown_pid"; wait "$shutdown_pid" 2>/dev/null || true

if [[ $keep -eq 1 ]]; then
    step "Sandbox kept at $sandbox (export VOLWATCH_CONFIG=$sandbox/volwatch.toml to explore)"
fi
exit "$failed"
