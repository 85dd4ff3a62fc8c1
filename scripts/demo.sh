#!/usr/bin/env bash
# Installs what is missing, builds, and runs volwatch's main job on a
# throwaway sandbox volume under a temporary directory: its own host config
# and lock directory, so no root is needed and nothing outside it changes.
#   scripts/demo.sh [--keep]     --keep leaves the sandbox for you to explore
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

keep=0
[[ "${1:-}" == --keep ]] && keep=1

scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target programs >/dev/null
bin=$top/build/tools

sandbox=$(mktemp -d "${TMPDIR:-/tmp}/volwatch-demo.XXXXXX")
if [[ $keep -eq 0 ]]; then trap 'rm -rf "$sandbox"' EXIT; fi
vol=$sandbox/vol
mkdir -p "$vol/etc/volwatch" "$vol/usr/lib/modules/6.1.0-18/kernel/drivers" "$vol/boot" "$sandbox/locks"
echo "e1000e driver" > "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/e1000e.ko"
echo "initramfs-tools config" > "$vol/usr/lib/modules/6.1.0-18/modules.order"

cat > "$sandbox/volwatch.toml" <<TOML
# The host config: trusted. It alone decides what may run.
lock_dir = "$sandbox/locks"
discover = false
volumes  = ["$vol"]

[rebuilders]
initramfs = { argv = ["tar", "-C", "{root}", "-czf", "{product}", "usr/lib/modules"], timeout = "1m" }
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
TOML
export VOLWATCH_CONFIG=$sandbox/volwatch.toml

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@" || printf '(exit status %d)\n' "$?"; }

step "A sandbox volume at $vol, with host config $VOLWATCH_CONFIG"
step "Before the first build the product is missing"
show "$bin/vcheck" "$vol"

step "Build the cache"
if [[ -x $bin/vrebuild ]]; then
    show "$bin/vrebuild" "$vol"
else
    # vrebuild is not built yet: run the rebuilder by hand.
    tar -C "$vol" -czf "$vol/boot/initrd.img" usr/lib/modules
    touch -d "@$(( $(date +%s) + 1 ))" "$vol/boot/initrd.img"
    sleep 1.1
fi
show "$bin/vcheck" "$vol"

step "A package manager installs a new module (with an old mtime, as dpkg and tar do)"
echo "new driver" > "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/igc.ko"
touch -d "2024-01-01" "$vol/usr/lib/modules/6.1.0-18/kernel/drivers/igc.ko"
show "$bin/vcheck" "$vol"

step "The same report as JSON, for scripts"
show "$bin/vcheck" --json "$vol"

step "And for Prometheus' node_exporter textfile collector"
show "$bin/vcheck" --format=prometheus "$vol"

if [[ -x $bin/vrebuild ]]; then
    step "Rebuild, and the volume is clean again"
    show "$bin/vrebuild" "$vol"
    show "$bin/vcheck" "$vol"
fi

if [[ $keep -eq 1 ]]; then
    step "Sandbox kept at $sandbox (export VOLWATCH_CONFIG=$sandbox/volwatch.toml to explore)"
fi
