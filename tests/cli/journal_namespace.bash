#!/usr/bin/env bash
# journal_namespace.bash CATALOG COMMAND...: runs COMMAND beside a private
# systemd-journald. Run under `unshare -m --propagation private` as root: the
# tmpfs mounts below hide the host's journal sockets, journal files and
# catalog database, so nothing reaches the host's journal. The catalog is
# installed and compiled, so `journalctl -x` explains volwatch's events.
set -euo pipefail
catalog=$1
shift
mkdir -p /run/systemd /run/log
for dir in /run/systemd /run/log /var/log/journal /var/lib/systemd/catalog /usr/lib/systemd/catalog; do
    [[ -d $dir ]] || continue
    mount -t tmpfs tmpfs "$dir"
done
mkdir -p /var/lib/systemd/catalog /usr/lib/systemd/catalog
cp "$catalog" /usr/lib/systemd/catalog/
journalctl --update-catalog
/lib/systemd/systemd-journald &
journald=$!
trap 'kill $journald 2>/dev/null; wait $journald 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [[ -S /run/systemd/journal/socket ]] && break
    sleep 0.1
done
[[ -S /run/systemd/journal/socket ]] || { echo "systemd-journald made no socket" >&2; exit 1; }
"$@"
