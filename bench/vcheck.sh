#!/usr/bin/env bash
# bench/vcheck.sh: vcheck --deep against find on a large sandbox volume, and
# vcheck --all on a clean machine (DESIGN §10).
#
#   bash bench/vcheck.sh [--files N] [--rounds R] [--keep]
#
# Builds vcheck unless $VCHECK names one (else a Release build/tools/vcheck,
# else a Release build in build-bench/), generates a sandbox volume under a
# temporary directory with its own host config and lock directory, warms the
# page cache, then times in one run, interleaved, R rounds each:
#   vcheck --config HOST --deep VOLROOT
#   find SRC \( -newer PRODUCT -o -cnewer PRODUCT \) -print -quit
# in the clean case (the product is newer than every source, so both visit
# everything) and prints both medians and the ratio vcheck/find, vcheck's max
# RSS, and the median of `vcheck --all` on a small clean volume (hyperfine).
# Targets: ratio <= 1.0 and < 1 s for 1,000,000 files; --all < 50 ms.
set -euo pipefail

files=1000000
rounds=5
keep=0
small_files=5000
while [ $# -gt 0 ]; do
    case "$1" in
    --files) files="$2"; shift 2 ;;
    --files=*) files="${1#*=}"; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "vcheck.sh: unknown argument: $1" >&2; exit 64 ;;
    esac
done
case "$files$rounds" in *[!0-9]*) echo "vcheck.sh: --files and --rounds take numbers" >&2; exit 64 ;; esac
[ "$files" -ge 1 ] && [ "$rounds" -ge 1 ] || { echo "vcheck.sh: --files and --rounds must be positive" >&2; exit 64; }

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
"$repo/scripts/deps.sh" bench   # the build and the peer tools (hyperfine, inotifywait, time)
python=$(command -v python3) || { echo "vcheck.sh: python3 is needed to generate the tree" >&2; exit 69; }

release_build() {  # $1: a build directory; true if it was configured for an optimised build
    grep -Eq '^CMAKE_BUILD_TYPE:[A-Z]+=(Release|RelWithDebInfo)$' "$1/CMakeCache.txt" 2>/dev/null
}
if [ -n "${VCHECK:-}" ]; then
    vcheck="$VCHECK"
elif [ -x "$repo/build/tools/vcheck" ] && release_build "$repo/build"; then
    vcheck="$repo/build/tools/vcheck"
else
    build="$repo/build-bench"
    if ! release_build "$build"; then
        cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    cmake --build "$build" -j"$(nproc)" --target vcheck >/dev/null
    vcheck="$build/tools/vcheck"
fi
[ -x "$vcheck" ] || { echo "vcheck.sh: no vcheck at $vcheck" >&2; exit 69; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/vcheck-bench.XXXXXX")"
cleanup() {
    if [ "$keep" = 1 ]; then echo "kept: $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# make_volume ROOT NFILES: a volume whose deep cache "initramfs" covers
# usr/lib/modules (NFILES files) and whose product boot/initrd.img lies outside
# the sources; a shallow "ld.so.cache" cache besides.
make_volume() {
    local root="$1" n="$2"
    mkdir -p "$root/usr/lib/modules" "$root/boot" "$root/etc/volwatch" "$root/etc/ld.so.conf.d"
    "$python" "$here/gen_tree.py" "$root/usr/lib/modules" --files "$n" --jobs "$(nproc)"
    printf 'include /etc/ld.so.conf.d/*.conf\n' >"$root/etc/ld.so.conf"
    printf '/usr/local/lib\n' >"$root/etc/ld.so.conf.d/libc.conf"
    cat >"$root/etc/volwatch/bootcaches.toml" <<'EOF'
version = 1

[[cache]]
name    = "initramfs"
sources = ["usr/lib/modules"]
product = "boot/initrd.img"
depth   = "deep"
rebuild = "initramfs"

[[cache]]
name    = "ld.so.cache"
sources = ["etc/ld.so.conf", "etc/ld.so.conf.d"]
product = "etc/ld.so.cache"
rebuild = "ldconfig"
EOF
}

# host_config FILE ROOT: a host config of its own (lock_dir in the sandbox, no
# mount discovery, only ROOT).
host_config() {
    cat >"$1" <<EOF
lock_dir = "$tmp/lock"
discover = false
volumes  = ["$2"]

[rebuilders]
initramfs = { argv = ["true", "{root}"], timeout = "10m" }
ldconfig  = { argv = ["true", "{root}"] }
EOF
}

mkdir -p "$tmp/lock"
big="$tmp/vol"
small="$tmp/small"
echo "generating $files files under $big ..." >&2
t0=$EPOCHREALTIME
make_volume "$big" "$files"
make_volume "$small" "$small_files"
host_config "$tmp/host.toml" "$big"
host_config "$tmp/host-small.toml" "$small"
# The products last, a little later than every source (by mtime and ctime:
# the kernel's file-time granularity is a clock tick).
sleep 0.05
for root in "$big" "$small"; do
    : >"$root/boot/initrd.img"
    : >"$root/etc/ld.so.cache"
done
sync  # write back the new inodes now, not in the middle of the timed rounds
echo "generated in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s" >&2

src="$big/usr/lib/modules"
product="$big/boot/initrd.img"
vcheck_cmd=("$vcheck" --config "$tmp/host.toml" --deep "$big")
find_cmd=(find "$src" \( -newer "$product" -o -cnewer "$product" \) -print -quit)

# Warm the caches, and check that the case is the clean one for both tools.
if ! out=$("${vcheck_cmd[@]}" 2>&1); then
    echo "vcheck.sh: vcheck does not report the sandbox clean:" >&2
    echo "$out" >&2
    exit 1
fi
out=$("${find_cmd[@]}")
[ -z "$out" ] || { echo "vcheck.sh: find found a newer source: $out" >&2; exit 1; }
entries=$(find "$src" | wc -l)

# now_us: microseconds since the epoch, from bash's own clock (no fork).
now_us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }

# cpu_ticks: busy ticks of the whole machine, and of this script's reaped children.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
children_busy() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
# rounds LABEL [PREFIX...]: R interleaved rounds of both commands (run under
# PREFIX, e.g. taskset); sets vmed, fmed (microseconds) and ratio.
rounds() {
    local label="$1" r a b c vt ft
    shift
    local vtimes=() ftimes=()
    for ((r = 1; r <= rounds; r++)); do
        # Alternate which tool goes first, so neither always inherits the other's cache state.
        if ((r % 2)); then
            a=$(now_us); "$@" "${vcheck_cmd[@]}" >/dev/null; b=$(now_us)
            "$@" "${find_cmd[@]}" >/dev/null; c=$(now_us)
            vt=$((b - a)) ft=$((c - b))
        else
            a=$(now_us); "$@" "${find_cmd[@]}" >/dev/null; b=$(now_us)
            "$@" "${vcheck_cmd[@]}" >/dev/null; c=$(now_us)
            ft=$((b - a)) vt=$((c - b))
        fi
        vtimes+=("$vt") ftimes+=("$ft")
        printf '%s round %d: vcheck %s ms, find %s ms\n' "$label" "$r" "$(ms "$vt")" "$(ms "$ft")" >&2
    done
    vmed=$(printf '%s\n' "${vtimes[@]}" | median)
    fmed=$(printf '%s\n' "${ftimes[@]}" | median)
    ratio=$(awk -v v="$vmed" -v f="$fmed" 'BEGIN { printf "%.2f", v / f }')
}

busy0=$(machine_busy) mine0=$(children_busy) wall0=$(now_us)
rounds "2 CPUs"
busy1=$(machine_busy) mine1=$(children_busy) wall1=$(now_us)
# The same on one CPU: the walker's own efficiency, independent of the second core.
pinned=0
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
    v2=$vmed f2=$fmed r2=$ratio
    rounds "1 CPU" taskset -c 0
    pinned=1 v1=$vmed f1=$fmed r1=$ratio
    vmed=$v2 fmed=$f2 ratio=$r2
fi

rss=$(/usr/bin/time -f '%M' -o "$tmp/time.out" "${vcheck_cmd[@]}" >/dev/null && cat "$tmp/time.out")
find_rss=$(/usr/bin/time -f '%M' -o "$tmp/time.out" "${find_cmd[@]}" >/dev/null && cat "$tmp/time.out")

# The shutdown path: vcheck --all on a clean machine (one small volume).
"$vcheck" --all --config "$tmp/host-small.toml" >/dev/null || {
    echo "vcheck.sh: the small volume is not clean" >&2
    exit 1
}
if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 5 --runs 100 --export-json "$tmp/all.json" --style none \
        "$vcheck --all --config $tmp/host-small.toml" >/dev/null 2>"$tmp/hyperfine.err" || {
        cat "$tmp/hyperfine.err" >&2
        exit 1
    }
    all_med=$("$python" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(round(r["median"]*1e6))' "$tmp/all.json")
else
    alltimes=()
    for ((r = 1; r <= 50; r++)); do
        a=$(now_us); "$vcheck" --all --config "$tmp/host-small.toml" >/dev/null; b=$(now_us)
        alltimes+=($((b - a)))
    done
    all_med=$(printf '%s\n' "${alltimes[@]}" | median)
fi

# A source changed deep down: both must now see it (and vcheck exits 1).
victim=$(find "$src" -type f -name '*.ko' | tail -n 1)
touch "$victim"
stale=0
"$vcheck" --config "$tmp/host.toml" --deep --quiet "$big" || stale=$?
found=$("${find_cmd[@]}")
[ "$stale" = 1 ] && [ -n "$found" ] || { echo "vcheck.sh: a touched source went unnoticed (vcheck $stale, find '$found')" >&2; exit 1; }
: >"$product"  # clean again, for --keep

# The share of the machine's CPU that other processes used during the rounds.
others=$(awk -v b=$((busy1 - busy0)) -v m=$((mine1 - mine0)) -v w=$((wall1 - wall0)) -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN { o = (b - m) / hz / (w / 1e6 * n) * 100; if (o < 0) o = 0; printf "%.0f", o }')

echo
echo "vcheck: $vcheck"
echo "other processes used $others% of the machine's CPU during the rounds (load average $(cut -d' ' -f1-3 /proc/loadavg));"
echo "  vcheck uses both cores, so contention slows it more than the single-threaded find"
echo "commands: ${vcheck_cmd[*]}"
echo "          ${find_cmd[*]}"
echo "tree: $entries entries ($files files) under $src, $(nproc) CPUs, warm cache, $rounds interleaved rounds"
printf 'vcheck --deep median: %s ms (max RSS %s KiB)\n' "$(ms "$vmed")" "$rss"
printf 'find -newer median:   %s ms (max RSS %s KiB)\n' "$(ms "$fmed")" "$find_rss"
printf 'ratio vcheck/find:    %s (target <= 1.0; absolute target < 1000 ms)\n' "$ratio"
if [ "$pinned" = 1 ]; then
    printf 'both pinned to CPU 0: vcheck %s ms, find %s ms, ratio %s\n' "$(ms "$v1")" "$(ms "$f1")" "$r1"
fi
printf 'vcheck --all, clean machine (%d-file deep cache + shallow cache): median %s ms (target < 50 ms)\n' \
    "$small_files" "$(ms "$all_med")"
