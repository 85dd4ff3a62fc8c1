# Shared set-up for the lock tests (vlock.bats, vunlock.bats, lock_stress.bats):
# a private host config, one volume and a lock directory under a temporary
# directory, and helpers to start, watch and stop the processes a test owns.
# shellcheck shell=bash disable=SC2154  # bats sets status, output and stderr

bats_require_minimum_version 1.5.0

lock_setup() {
    [[ -x ${VLOCK:-} && -x ${VUNLOCK:-} ]] || skip "vlock or vunlock was not built (VLOCK, VUNLOCK unset)"
    # Not BATS_TEST_TMPDIR: the permission tests need a path another user can reach.
    T=$(mktemp -d /tmp/volwatch-lock.XXXXXX)
    chmod 755 "$T"
    V=$T/vol
    LOCKS=$T/locks
    mkdir -p "$V/etc/volwatch" "$V/src"
    write_host_config
    cat >"$V/etc/volwatch/bootcaches.toml" <<'EOF'
version = 1

[[cache]]
name = "probe"
sources = ["src"]
product = "product"
rebuild = "noop"
EOF
    export VOLWATCH_CONFIG=$T/host.toml
    : >"$T/pids"
}

# write_host_config [EXTRA TOML LINE...]
write_host_config() {
    {
        echo "lock_dir = \"$LOCKS\""
        echo "discover = false"
        echo "volumes = [\"$V\"]"
        printf '%s\n' "$@"
        echo "[rebuilders]"
        echo 'noop = { argv = ["true"] }'
    } >"$T/host.toml"
}

lock_teardown() {
    [[ -n ${T:-} && -d $T ]] || return 0
    local pid
    # Only what this test started, by process id; children first.
    while read -r pid; do
        [[ -n $pid ]] || continue
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    done <"$T/pids"
    rm -rf "$T"
}

# spawn CMD...: runs CMD in the background, records its pid for teardown,
# and leaves it in $SPAWNED.
spawn() {
    "$@" &
    SPAWNED=$!
    echo "$SPAWNED" >>"$T/pids"
}

# spawn_exec CMD...: spawn, then wait until the background process runs CMD
# itself. Until the forked shell has exec'd CMD, its command line is bash's,
# and `vlock --owner` records the owner's command line when it locks.
spawn_exec() {
    spawn "$@"
    wait_until 5 runs_command "$SPAWNED" "$(printf '%s ' "$@")"
}
runs_command() { [[ $(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) == "$2" ]]; }

# wait_until SECONDS CMD...: polls CMD (the test, not the product) until it
# succeeds; fails after SECONDS.
wait_until() {
    local limit=$1 start=$SECONDS
    shift
    until "$@"; do
        ((SECONDS - start < limit)) || { echo "timed out after ${limit}s waiting for: $*" >&2; return 1; }
        sleep 0.02
    done
}

locked() { "$VLOCK" --list "$V" | grep -q '^  locked by '; }
unlocked() { ! locked; }
live_waiters() { "$VLOCK" --list "$V" | grep -c '^  waiter .* alive$' || true; }
has_waiters() { [[ $(live_waiters) -ge $1 ]]; }

# has_lines FILE N: FILE exists with at least N lines.
has_lines() { [[ -f $1 && $(wc -l <"$1") -ge $2 ]]; }

# identity PID: "pid:start-ticks:boot-id" as a lock record names a process.
identity() {
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    # shellcheck disable=SC2086  # split the fields on purpose
    set -- "$1" $rest
    echo "$1:${21}:$(</proc/sys/kernel/random/boot_id)"
}

# volume_lock_file: the record file of the test volume.
volume_lock_file() {
    local files=("$LOCKS"/volumes/*.lock)
    echo "${files[0]}"
}
