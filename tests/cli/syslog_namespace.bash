#!/usr/bin/env bash
# syslog_namespace.bash LOG COMMAND...: runs COMMAND on a machine without a
# journal whose syslog socket is ours. Run under
# `unshare -m --propagation private` as root: /run/systemd becomes an empty
# tmpfs (no journal socket), /dev a tmpfs with the usual character devices
# bound in from the host's /dev, and a listener bound to /dev/log appends
# every datagram it receives to LOG, one per line. Nothing reaches the host.
set -euo pipefail
log=$1
shift
hostdev=$(mktemp -d)
mount --rbind /dev "$hostdev"
mkdir -p /run/systemd
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /dev
for node in null zero full random urandom tty; do
    [[ -e $hostdev/$node ]] || continue
    touch "/dev/$node"
    mount --bind "$hostdev/$node" "/dev/$node"
done
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
: >"$log"
python3 - "$log" <<'PY' &
import os, socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.bind("/dev/log")
with open(sys.argv[1], "a") as out:
    out.write("listening\n")
    out.flush()
    while True:
        data = listener.recv(65536)
        out.write(data.decode("utf-8", "replace").rstrip("\n").replace("\n", " ") + "\n")
        out.flush()
PY
listener=$!
trap 'kill $listener 2>/dev/null; wait $listener 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    [[ -S /dev/log ]] && grep -q '^listening$' "$log" && break
    sleep 0.1
done
[[ -S /dev/log ]] || { echo "the syslog listener made no /dev/log" >&2; exit 1; }
"$@"
sleep 0.2   # the last datagram, received before the listener stops
