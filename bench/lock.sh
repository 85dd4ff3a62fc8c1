#!/usr/bin/env bash
# bench/lock.sh: volwatch's volume lock against util-linux flock(1) (DESIGN §10).
#
#   bash bench/lock.sh [--runs N] [--rounds R] [--handoffs H] [--clients C] [--ops K]
#
# Builds vlock, vunlock and the lock_handoff helper in Release (build-bench/)
# unless $VLOCK, $VUNLOCK and $LOCK_HANDOFF name them, makes a sandbox volume
# with its own host config and lock directory under a temporary directory,
# then measures in one run:
#   1. whole process, uncontended: R interleaved rounds of N runs each of
#      `vlock VOL -- true` and `flock FILE true`; per-run medians and the
#      ratio vlock/flock (target <= 1.0, issue 13); the same for their CPU time
#      (user + system, children included), less disturbed by other jobs;
#   2. handoff, library level: H times, a holder releases while one waiter
#      sleeps in acquire_volume_lock(); the time from just before the release
#      to the waiter's return (target: median under 1 ms), beside the same
#      for a bare flock(2) handed from one process to another;
#   3. handoff, whole process: H times, a script's `vunlock VOL` starts while
#      `vlock VOL --wait -- lock_handoff stamp` sleeps; from just before
#      vunlock's exec to the command's first instruction (both processes'
#      start-up included);
#   3b. handoff against its floor: H times each, interleaved, the holder's
#      command stamps and exits while the next `vlock VOL --wait --
#      lock_handoff stamp` (or `flock FILE lock_handoff stamp`, the floor:
#      flock(1) forks and execs its command when the lock frees) waits;
#      from the stamp to the waiting command's first instruction;
#   4. contended throughput: C clients each run K times `vlock VOL --wait --
#      true`, then the same with `flock FILE true`; operations per second and
#      the ratio flock/vlock (target <= 1.1).
# The locale: flock(1) calls setlocale() and reads the locale files of $LANG
# on every run (13 opens, 0.15 M instructions for C.UTF-8); vlock reads none.
# So that the ratio does not depend on the caller's shell, both tools run
# under LC_ALL=C, the locale in which flock(1) is cheapest: nothing of
# vlock's own cost is left out, only flock's locale loading.
set -euo pipefail
export LC_ALL=C

runs=200
rounds=5
handoffs=50
clients=8
ops=100
while [ $# -gt 0 ]; do
    case "$1" in
    --runs|--rounds|--handoffs|--clients|--ops)
        [ $# -ge 2 ] || { echo "lock.sh: $1 needs a value" >&2; exit 64; }
        declare "${1#--}=$2"; shift 2 ;;
    --runs=*|--rounds=*|--handoffs=*|--clients=*|--ops=*)
        name="${1%%=*}"; declare "${name#--}=${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "lock.sh: unknown argument: $1" >&2; exit 64 ;;
    esac
done
case "$runs$rounds$handoffs$clients$ops" in *[!0-9]*) echo "lock.sh: options take positive numbers" >&2; exit 64 ;; esac

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
"$repo/scripts/deps.sh" bench   # the build and the peer tools (hyperfine, inotifywait, time)
command -v flock >/dev/null || { echo "lock.sh: flock(1) (util-linux) is needed" >&2; exit 69; }

if [ -n "${VLOCK:-}" ] && [ -n "${VUNLOCK:-}" ] && [ -n "${LOCK_HANDOFF:-}" ]; then
    vlock="$VLOCK" vunlock="$VUNLOCK" handoff="$LOCK_HANDOFF"
else
    build="$repo/build-bench"
    # Configure every time: the programs' targets exist once their sources do.
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j"$(nproc)" --target vlock vunlock lock_handoff >/dev/null
    vlock="$build/tools/vlock" vunlock="$build/tools/vunlock" handoff="$build/tests/helpers/lock_handoff"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/lock-bench.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
vol="$tmp/vol"
mkdir -p "$vol/etc/volwatch" "$vol/src"
cat >"$tmp/host.toml" <<EOF
lock_dir = "$tmp/locks"
discover = false
volumes = ["$vol"]
[rebuilders]
noop = { argv = ["true"] }
EOF
cat >"$vol/etc/volwatch/bootcaches.toml" <<'EOF'
version = 1
[[cache]]
name = "probe"
sources = ["src"]
product = "product"
rebuild = "noop"
EOF
export VOLWATCH_CONFIG="$tmp/host.toml"
flockfile="$tmp/flock.lock"
: >"$flockfile"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p90() { sort -g | awk '{ v[NR] = $1 } END { i = int(NR * 0.9); if (i < 1) i = 1; print v[i] }'; }
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
# CPU (user + system) of this shell's finished children, their own children
# included: `times` must run in this shell, not in a $(...) subshell.
cpu_mark() { times >"$tmp/cpu.$1"; }
cpu_us() { awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] } printf "%.0f\n", t * 1e6 }' "$tmp/cpu.$1"; }

echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "vlock: $vlock; both tools run with LC_ALL=$LC_ALL (LANG=${LANG:-unset})"

# 1. Uncontended, whole process.
"$vlock" "$vol" -- true
flock "$flockfile" true
: >"$tmp/vlock.times"
: >"$tmp/flock.times"
: >"$tmp/vlock.cpu"
: >"$tmp/flock.cpu"
for ((r = 0; r < rounds; r++)); do
    for tool in vlock flock; do
        [ $((r % 2)) -eq 1 ] && tool=$([ "$tool" = vlock ] && echo flock || echo vlock)
        start=$(now_us)
        cpu_mark start
        if [ "$tool" = vlock ]; then
            for ((i = 0; i < runs; i++)); do "$vlock" "$vol" -- true; done
        else
            for ((i = 0; i < runs; i++)); do flock "$flockfile" true; done
        fi
        cpu_mark end
        echo "$(( ($(now_us) - start) ))" | awk -v n="$runs" '{ printf "%.1f\n", $1 / n }' >>"$tmp/$tool.times"
        echo "$(( $(cpu_us end) - $(cpu_us start) ))" | awk -v n="$runs" '{ printf "%.1f\n", $1 / n }' >>"$tmp/$tool.cpu"
    done
done
vlock_us=$(median <"$tmp/vlock.times")
flock_us=$(median <"$tmp/flock.times")
printf 'uncontended, whole process (%d rounds x %d runs): vlock VOL -- true %.0f us, flock FILE true %.0f us, ratio %.2f (target <= 1.0)\n' \
    "$rounds" "$runs" "$vlock_us" "$flock_us" "$(awk -v a="$vlock_us" -v b="$flock_us" 'BEGIN { print a / b }')"
# The same runs' CPU time, which other jobs on the machine disturb less than
# the elapsed time; and every round, to show the spread.
vlock_cpu=$(median <"$tmp/vlock.cpu")
flock_cpu=$(median <"$tmp/flock.cpu")
printf 'uncontended, CPU per run (user + system, the command included): vlock %.0f us, flock %.0f us, ratio %.2f\n' \
    "$vlock_cpu" "$flock_cpu" "$(awk -v a="$vlock_cpu" -v b="$flock_cpu" 'BEGIN { print a / b }')"
printf '  rounds, elapsed us per run: vlock %s; flock %s\n' "$(paste -sd' ' "$tmp/vlock.times")" "$(paste -sd' ' "$tmp/flock.times")"

# 2. Handoff, library level.
"$handoff" volwatch "$tmp/locks" "$handoffs" >"$tmp/handoff.volwatch"
"$handoff" flock "$tmp/handoff.flock" "$handoffs" >"$tmp/handoff.flock.times"
printf 'handoff, library (%d handoffs): volwatch median %.0f us (p90 %.0f), flock(2) median %.0f us (p90 %.0f) (target: median < 1000 us)\n' \
    "$handoffs" "$(median <"$tmp/handoff.volwatch")" "$(p90 <"$tmp/handoff.volwatch")" \
    "$(median <"$tmp/handoff.flock.times")" "$(p90 <"$tmp/handoff.flock.times")"

# 3. Handoff, whole process: vunlock in a script to the next waiter's command.
waiting() { "$vlock" --list "$vol" | grep -c '^  waiter .* alive$' || true; }
: >"$tmp/handoff.process"
: >"$tmp/handoff.rewrite"
for ((h = 0; h < handoffs; h++)); do
    mkfifo "$tmp/go"
    sh -c '"$1" "$2" || exit 9; read -r _ <"$3/go"; "$4" stamp >"$3/t0"; exec "$5" "$2"' \
        _ "$vlock" "$vol" "$tmp" "$handoff" "$vunlock" &
    holder=$!
    until "$vlock" --list "$vol" | grep -q '^  locked by '; do sleep 0.005; done
    "$vlock" "$vol" --wait=30s -- "$handoff" stamp >"$tmp/t1" &
    waiter=$!
    until [ "$(waiting)" -ge 1 ]; do sleep 0.005; done
    sleep 0.02
    # An observer stamps the release itself: the next rewrite of the record
    # is vunlock's (it wakes together with the waiter).
    rm -f "$tmp/tr"   # not the last round's "ready"
    timeout 60 "$handoff" observe "$(ls "$tmp"/locks/volumes/*.lock | head -n 1)" >"$tmp/tr" &
    observer=$!
    until grep -q ready "$tmp/tr" 2>/dev/null; do sleep 0.002; done
    echo go >"$tmp/go"
    wait "$holder" "$waiter" "$observer"
    rm -f "$tmp/go"
    awk -v a="$(cat "$tmp/t0")" -v b="$(cat "$tmp/t1")" 'BEGIN { printf "%.1f\n", (b - a) / 1000 }' >>"$tmp/handoff.process"
    awk -v a="$(tail -n 1 "$tmp/tr")" -v b="$(cat "$tmp/t1")" 'BEGIN { printf "%.1f\n", (b - a) / 1000 }' >>"$tmp/handoff.rewrite"
done
# For scale: one whole vunlock run (on an unlocked volume: exit 3), and one
# exec of the stamp command, both included above.
: >"$tmp/vunlock.times"
for ((h = 0; h < handoffs; h++)); do
    start=$(now_us)
    "$vunlock" "$vol" 2>/dev/null || true
    echo "$(( $(now_us) - start ))" >>"$tmp/vunlock.times"
done
printf 'handoff, whole process (%d handoffs): vunlock start to the waiter command start, median %.0f us (p90 %.0f); one vunlock run alone %.0f us\n' \
    "$handoffs" "$(median <"$tmp/handoff.process")" "$(p90 <"$tmp/handoff.process")" "$(median <"$tmp/vunlock.times")"
printf 'handoff, whole process (%d handoffs): vunlock'"'"'s release rewrite to the waiter command start, median %.0f us (p90 %.0f) (target: median < 1000 us)\n' \
    "$handoffs" "$(median <"$tmp/handoff.rewrite")" "$(p90 <"$tmp/handoff.rewrite")"

# 3b. Handoff, whole process, against its floor: the holder's command stamps
# and exits; the time to the waiting command's first instruction. With
# flock(1) (`flock FILE CMD` started when the lock frees: flock's exit
# closes the lock, the waiter's flock(2) returns, it forks and execs CMD)
# this is the floor on this machine; with vlock the holder's vlock reaps
# its command and releases, the waiter is woken, takes the lock and lets
# its parked command exec.
floor_round() {  # $1: vlock or flock; appends one handoff in microseconds
    mkfifo "$tmp/go"
    if [ "$1" = vlock ]; then
        "$vlock" "$vol" -- sh -c 'read -r _ <"$1/go"; exec "$2" stamp >"$1/t0"' _ "$tmp" "$handoff" &
        holder=$!
        until "$vlock" --list "$vol" | grep -q '^  locked by '; do sleep 0.005; done
        "$vlock" "$vol" --wait=30s -- "$handoff" stamp >"$tmp/t1" &
        waiter=$!
        until [ "$(waiting)" -ge 1 ]; do sleep 0.005; done
    else
        flock "$flockfile" sh -c 'read -r _ <"$1/go"; exec "$2" stamp >"$1/t0"' _ "$tmp" "$handoff" &
        holder=$!
        until ! flock -n "$flockfile" true; do sleep 0.005; done
        flock "$flockfile" "$handoff" stamp >"$tmp/t1" &
        waiter=$!
        # Asleep in flock(2): state S with the lock file open.
        until [ "$(awk '{ print $3 }' "/proc/$waiter/stat" 2>/dev/null)" = S ] &&
            ls -l "/proc/$waiter/fd" 2>/dev/null | grep -q "$flockfile"; do sleep 0.005; done
    fi
    sleep 0.02
    echo go >"$tmp/go"
    wait "$holder" "$waiter"
    rm -f "$tmp/go"
    awk -v a="$(cat "$tmp/t0")" -v b="$(cat "$tmp/t1")" 'BEGIN { printf "%.1f\n", (b - a) / 1000 }' >>"$tmp/floor.$1"
}
: >"$tmp/floor.vlock"
: >"$tmp/floor.flock"
for ((h = 0; h < handoffs; h++)); do
    if ((h % 2)); then floor_round flock; floor_round vlock; else floor_round vlock; floor_round flock; fi
done
floor_vlock=$(median <"$tmp/floor.vlock")
floor_flock=$(median <"$tmp/floor.flock")
printf 'handoff, whole process (%d handoffs each, interleaved): holder command end to the waiting command start, vlock median %.0f us (p90 %.0f), flock(1) (the floor) median %.0f us (p90 %.0f), ratio %.2f (target <= 1.2)\n' \
    "$handoffs" "$floor_vlock" "$(p90 <"$tmp/floor.vlock")" "$floor_flock" "$(p90 <"$tmp/floor.flock")" \
    "$(awk -v a="$floor_vlock" -v b="$floor_flock" 'BEGIN { print a / b }')"

# 4. Contended throughput.
contend() {  # $1: vlock or flock
    local start c
    start=$(now_us)
    for ((c = 0; c < clients; c++)); do
        if [ "$1" = vlock ]; then
            (for ((i = 0; i < ops; i++)); do "$vlock" "$vol" --wait=60s -- true; done) &
        else
            (for ((i = 0; i < ops; i++)); do flock "$flockfile" true; done) &
        fi
    done
    wait
    awk -v us="$(( $(now_us) - start ))" -v n="$((clients * ops))" 'BEGIN { printf "%.0f\n", n / (us / 1e6) }'
}
vlock_ops=$(contend vlock)
flock_ops=$(contend flock)
printf 'contended, %d clients x %d ops: vlock %d ops/s, flock %d ops/s, ratio flock/vlock %.2f (target <= 1.1)\n' \
    "$clients" "$ops" "$vlock_ops" "$flock_ops" "$(awk -v a="$flock_ops" -v b="$vlock_ops" 'BEGIN { print a / b }')"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
