#!/usr/bin/env bash
# Installs the Debian packages volwatch needs to build and test. As root it
# runs apt-get (one update, then one install); otherwise it prints the one
# line to run and fails if anything required is missing.
# Usage: scripts/deps.sh [build|test|bench|vm]
set -euo pipefail

# Not libboost-dev: Boost.Interprocess has no job here (docs/locking.md says why).
build_packages=(cmake g++ make pkg-config libcli11-dev libfmt-dev libtomlplusplus-dev nlohmann-json3-dev libsystemd-dev libblkid-dev scdoc)
test_packages=(googletest libgtest-dev bats util-linux e2fsprogs dosfstools mandoc python3-jsonschema
               clang libclang-rt-14-dev zsh fish bash-completion lintian shared-mime-info kmod systemd grub-common)

# The benchmarks' peers (bench/*.sh): util-linux flock, find, inotifywait, hyperfine.
bench_packages=(python3 util-linux findutils inotify-tools hyperfine time e2fsprogs)

# The virtual-machine suite (tests/vm): QEMU, UEFI firmware, a standalone GRUB,
# FAT tools that work on image files, partitioning, and debootstrap.
vm_packages=(qemu-system-x86 qemu-utils ovmf grub-efi-amd64-bin mtools dosfstools fdisk gdisk debootstrap
             systemd-boot-efi python3)

kind=${1:-build}
want=("${build_packages[@]}")
case "$kind" in
test) want+=("${test_packages[@]}") ;;
bench) want+=("${bench_packages[@]}") ;;
vm) want+=("${vm_packages[@]}") ;;
build) ;;
*) echo "deps: unknown kind $kind (build, test, bench or vm)" >&2; exit 64 ;;
esac

missing=()
for package in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
# promtool (tests/cli/prometheus.bats) is in Debian's prometheus package, whose
# installation would also start a Prometheus server: unpack promtool alone.
need_promtool=false
if [[ $kind == test ]] && ! command -v promtool >/dev/null; then need_promtool=true; fi

if [[ ${#missing[@]} -eq 0 && $need_promtool == false ]]; then exit 0; fi

if [[ $(id -u) -ne 0 ]]; then
    if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi   # promtool is optional: its tests skip
    echo "deps: missing packages; run as root:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "deps: installing ${missing[*]}" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ $need_promtool == true ]]; then
    scratch=$(mktemp -d)
    if (cd "$scratch" && apt-get download prometheus && dpkg-deb --fsys-tarfile prometheus_*.deb |
            tar -xO ./usr/bin/promtool >promtool) >/dev/null 2>&1; then
        install -m 755 "$scratch/promtool" /usr/local/bin/promtool
    else
        echo "deps: could not fetch promtool (apt-get download prometheus); its tests will be skipped" >&2
    fi
    rm -rf "$scratch"
fi
