#!/usr/bin/env bash
# bench/vwatch.sh: the vwatch targets of DESIGN §10, measured against peers.
#
#   bash bench/vwatch.sh [--dirs N] [--rounds R] [--storm M] [--samples S] [--idle SECONDS] [--keep]
#
# Builds vwatch unless $VWATCH names one (else a Release build/tools/vwatch,
# else a Release build in build-bench/), generates a sandbox volume whose deep
# cache covers a source tree of N directories (default 100,000), and measures:
#   1. time to READY and peak RSS (VmHWM) of `vwatch --backend inotify` and
#      `--backend fanotify` against `inotifywait -r -m` ("Watches established")
#      on the same tree, R rounds each (default 3), interleaved; medians;
#   2. (root) vwatch's CPU time (utime + stime) during a storm of M bind
#      mounts and unmounts (default 2,000) made while it runs;
#   3. latency from a source change to the start of the rebuild, minus the
#      settle time (200ms), S samples (default 20): median and maximum;
#   4. idle wake-ups: vwatch's context switches over SECONDS (default 60)
#      with nothing happening, per backend (fanotify on a loop-mounted file
#      system of its own when root, since a file-system mark on a busy one
#      sees every write).
# Targets (issue 13): inotify >= 5x faster than inotifywait and <= 20 MB RSS;
# fanotify < 50 ms whatever the size; storm < 0.1 s of CPU; latency < 50 ms;
# idle 0.
set -euo pipefail

dirs=100000
rounds=3
storm=2000
samples=20
idle=60
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --dirs) dirs="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --storm) storm="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "vwatch.sh: unknown argument: $1" >&2; exit 64 ;;
    esac
done
case "$dirs$rounds$storm$samples$idle" in *[!0-9]*) echo "vwatch.sh: options take numbers" >&2; exit 64 ;; esac

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
"$repo/scripts/deps.sh" bench   # the build and the peer tools (hyperfine, inotifywait, time)
command -v python3 >/dev/null || { echo "vwatch.sh: python3 is needed" >&2; exit 69; }

release_build() { grep -Eq '^CMAKE_BUILD_TYPE:[A-Z]+=(Release|RelWithDebInfo)$' "$1/CMakeCache.txt" 2>/dev/null; }
if [ -n "${VWATCH:-}" ]; then
    vwatch="$VWATCH"
elif [ -x "$repo/build/tools/vwatch" ] && release_build "$repo/build"; then
    vwatch="$repo/build/tools/vwatch"
else
    build="$repo/build-bench"
    release_build "$build" || cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j"$(nproc)" --target vwatch >/dev/null
    vwatch="$build/tools/vwatch"
fi
[ -x "$vwatch" ] || { echo "vwatch.sh: no vwatch at $vwatch" >&2; exit 69; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/vwatch-bench.XXXXXX")"
chmod 755 "$tmp"
mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    if [ "$keep" = 1 ]; then echo "kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# make_volume ROOT: a volume with one deep cache over src/, product out/p.
make_volume() {
    mkdir -p "$1/etc/volwatch" "$1/src" "$1/out"
    cat > "$1/etc/volwatch/bootcaches.toml" <<'TOML'
version = 1

[[cache]]
name    = "tree"
sources = ["src"]
product = "out/p"
depth   = "deep"
rebuild = "stamp"
TOML
}
# make_host FILE ROOT: a host config watching ROOT only, with its own lock directory.
make_host() {
    mkdir -p "$tmp/locks"
    cat > "$1" <<TOML
lock_dir = "$tmp/locks"
discover = false
volumes = ["$2"]
[rebuilders]
stamp = { argv = ["touch", "{product}"] }
TOML
}

echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "vwatch: $vwatch ($("$vwatch" --version | head -1))"

# ---- 1. time to READY and peak RSS on a large tree
vol="$tmp/vol"
make_volume "$vol"
make_host "$tmp/host.toml" "$vol"
python3 - "$vol/src" "$dirs" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
# 8 levels, like usr/lib/modules: v/kernel/cat/a/b/c/d/e; as many leaves as needed.
made = 0
i = 0
while made < n:
    parts = [f"v{i // 20000}", "kernel", f"c{(i // 2000) % 10}", f"a{(i // 200) % 10}", f"b{(i // 20) % 10}", f"d{i % 20}"]
    path = root
    for p in parts:
        path = os.path.join(path, p)
        if not os.path.isdir(path):
            os.mkdir(path)
            made += 1
            if made >= n:
                break
    i += 1
PY
total=$(find "$vol/src" -type d | wc -l)
echo "tree: $total directories under $vol/src"

# ready_time KIND: prints "SECONDS RSS_KB" for one start of KIND.
ready_time() {
    python3 - "$@" <<'PY'
import os, subprocess, sys, time
kind, vwatch, host, src = sys.argv[1:5]
if kind == "inotifywait":
    argv, marker = ["inotifywait", "-r", "-m", "-e", "create,delete,modify,attrib,close_write,move", src], "Watches established"
else:
    argv = [vwatch, "--config", host, "--backend", kind, "--startup-delay", "300s", "--log-level", "info"]
    marker = "ready: watching"
t0 = time.monotonic()
p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    if marker in line:
        t = time.monotonic() - t0
        break
else:
    sys.exit(f"{kind}: exited before ready")
rss = 0
with open(f"/proc/{p.pid}/status") as f:
    for l in f:
        if l.startswith("VmHWM:"):
            rss = int(l.split()[1])
p.terminate()
p.wait()
print(f"{t:.4f} {rss}")
PY
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

kinds=(inotify)
[ "$(id -u)" = 0 ] && kinds+=(fanotify)
command -v inotifywait >/dev/null && kinds+=(inotifywait) || echo "inotifywait not installed (apt-get install inotify-tools): no peer figure"
declare -A times rsses
for ((r = 0; r < rounds; r++)); do
    order=("${kinds[@]}")
    (( r % 2 )) && order=($(printf '%s\n' "${kinds[@]}" | tac))
    for k in "${order[@]}"; do
        read -r t rss < <(ready_time "$k" "$vwatch" "$tmp/host.toml" "$vol/src")
        times[$k]+="$t "
        rsses[$k]+="$rss "
        sleep 0.5  # let the kernel free the previous instance's watches
    done
done
echo
echo "1. time to READY on $total directories, median of $rounds (peak RSS):"
for k in "${kinds[@]}"; do
    t=$(tr ' ' '\n' <<<"${times[$k]}" | grep . | median)
    rss=$(tr ' ' '\n' <<<"${rsses[$k]}" | grep . | sort -n | tail -1)
    printf '   %-12s %8.1f ms   %6.1f MB\n' "$k" "$(awk "BEGIN { print $t * 1000 }")" "$(awk "BEGIN { print $rss / 1024 }")"
    eval "median_$k=$t"
done
if [ -n "${median_inotifywait:-}" ]; then
    printf '   inotifywait / vwatch-inotify: %.2fx (target >= 5, RSS <= 20 MB)\n' "$(awk "BEGIN { print $median_inotifywait / $median_inotify }")"
fi
rm -rf "$vol/src"/*

# ---- helpers for the running-daemon measurements
small="$tmp/small"
make_volume "$small"
mkdir -p "$small/src/a"
echo one > "$small/src/a/f"
make_host "$tmp/small.toml" "$small"
cat > "$tmp/fake-vrebuild" <<'SH'
#!/bin/bash
echo "$EPOCHREALTIME" >> "$(dirname "$0")/starts"
root=${@: -1}
touch "$root/out/p"
SH
chmod +x "$tmp/fake-vrebuild"
: > "$tmp/starts"

start_daemon() {  # BACKEND CONFIG: starts vwatch, waits for READY and the first rebuild's end
    VOLWATCH_VREBUILD="$tmp/fake-vrebuild" "$vwatch" --config "$2" --backend "$1" --settle 200ms --startup-delay 0 --log-level debug \
        2> "$tmp/daemon.log" &
    daemon=$!
    local i
    for ((i = 0; i < 400; i++)); do grep -q ': clean' "$tmp/daemon.log" 2>/dev/null && return 0; sleep 0.05; done
    echo "vwatch did not settle; log:" >&2; cat "$tmp/daemon.log" >&2; exit 70
}
stop_daemon() { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
switches() { awk '/ctxt_switches/ { n += $2 } END { print n }' "/proc/$1/status"; }

# ---- 2. mount storm
echo
if [ "$(id -u)" = 0 ]; then
    start_daemon inotify "$tmp/small.toml"
    mkdir -p "$tmp/binds"
    before=$(cpu_ticks "$daemon")
    t0=$EPOCHREALTIME
    for ((i = 0; i < storm; i++)); do mkdir -p "$tmp/binds/$i"; mount --bind "$small/src" "$tmp/binds/$i"; done
    for ((i = 0; i < storm; i++)); do umount "$tmp/binds/$i"; done
    t1=$EPOCHREALTIME
    sleep 1.5  # the last mount-event rest (500 ms) and rate-limited re-read
    after=$(cpu_ticks "$daemon")
    hz=$(getconf CLK_TCK)
    printf '2. storm of %d bind mounts + %d unmounts (%.1f s): vwatch CPU %.2f s (target < 0.1 s)\n' "$storm" "$storm" \
        "$(awk "BEGIN { print $t1 - $t0 }")" "$(awk "BEGIN { print ($after - $before) / $hz }")"
    stop_daemon
else
    echo "2. mount storm: skipped (needs root)"
fi

# ---- 3. change-to-rebuild latency
start_daemon inotify "$tmp/small.toml"
: > "$tmp/starts"
lat=()
for ((i = 0; i < samples; i++)); do
    n=$(wc -l < "$tmp/starts")
    t0=$EPOCHREALTIME
    echo "$i" > "$small/src/a/f"
    for ((w = 0; w < 200; w++)); do [ "$(wc -l < "$tmp/starts")" -gt "$n" ] && break; sleep 0.01; done
    t1=$(tail -1 "$tmp/starts")
    lat+=("$(awk "BEGIN { print ($t1 - $t0) * 1000 - 200 }")")
    sleep 0.3  # the rebuild ends and the volume settles
done
stop_daemon
printf '3. change to rebuild start, minus the 200ms settle, %d samples: median %.1f ms, max %.1f ms (target < 50 ms)\n' \
    "$samples" "$(printf '%s\n' "${lat[@]}" | median)" "$(printf '%s\n' "${lat[@]}" | sort -g | tail -1)"

# ---- 4. idle wake-ups
idle_run() {  # BACKEND CONFIG LABEL
    start_daemon "$1" "$2"
    sleep 1
    local a b
    a=$(switches "$daemon")
    sleep "$idle"
    b=$(switches "$daemon")
    stop_daemon
    printf '4. idle, %s: %d context switches in %d s (%.1f per minute; target 0)\n' "$3" $((b - a)) "$idle" \
        "$(awk "BEGIN { print ($b - $a) * 60 / $idle }")"
}
idle_run inotify "$tmp/small.toml" "inotify"
if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
    truncate -s 16M "$tmp/img"
    mkfs.ext4 -q -F "$tmp/img"
    mkdir -p "$tmp/imgmnt"
    mount -o loop "$tmp/img" "$tmp/imgmnt"
    mounted+=("$tmp/imgmnt")
    make_volume "$tmp/imgmnt"
    mkdir -p "$tmp/imgmnt/src/a"
    make_host "$tmp/img.toml" "$tmp/imgmnt"
    idle_run fanotify "$tmp/img.toml" "fanotify (own file system)"
fi
