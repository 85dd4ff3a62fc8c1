# Shared set-up for the vwatch end-to-end tests: the real daemon on sandbox
# volumes (tests/cli/common.bash), with a stand-in vrebuild that records each
# launch, and bounded waits on the daemon's log.

VWATCH=${VWATCH:-$VOLWATCH_BUILD_DIR/tools/vwatch}
VLOCK=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}
VUNLOCK=${VUNLOCK:-$VOLWATCH_BUILD_DIR/tools/vunlock}
VCHECK=${VCHECK:-$VOLWATCH_BUILD_DIR/tools/vcheck}

# make_fake_vrebuild: $SANDBOX/fake-vrebuild, used through VOLWATCH_VREBUILD.
# Each run appends "start EPOCH ARGS", "built EPOCH" and "end EPOCH" to $SANDBOX/rebuilds.log,
# rebuilds the sandbox product with tar, then sleeps $SANDBOX/fake-sleep
# seconds (if that file exists; a change meanwhile leaves the product stale,
# as with a real build) and exits with $SANDBOX/fake-status (default 0).
make_fake_vrebuild() {
    cat > "$SANDBOX/fake-vrebuild" <<'SH'
#!/bin/bash
dir=$(dirname "$0")
root=${@: -1}
echo "start $(date +%s.%N) $*" >> "$dir/rebuilds.log"
tar -C "$root" -czf "$root/out/pack.tgz" src 2>/dev/null
echo "built $(date +%s.%N)" >> "$dir/rebuilds.log"
[[ -f $dir/fake-sleep ]] && sleep "$(cat "$dir/fake-sleep")"
echo "end $(date +%s.%N)" >> "$dir/rebuilds.log"
exit "$(cat "$dir/fake-status" 2>/dev/null || echo 0)"
SH
    chmod +x "$SANDBOX/fake-vrebuild"
    : > "$SANDBOX/rebuilds.log"
    export VOLWATCH_VREBUILD=$SANDBOX/fake-vrebuild
}

# start_vwatch ARGS...: runs the daemon in the background, logging to
# $LOG, and waits until it says it is ready.
start_vwatch() {
    LOG=$SANDBOX/vwatch.log
    : > "$LOG"
    # inotify unless a test says otherwise: a fanotify mark on the file system
    # holding $TMPDIR would see every write on it (tests/cli/vwatch_root.bats
    # covers fanotify on file systems of its own).
    # VWATCH_WRAPPER: a command to run it under (unshare, for isolation).
    ${VWATCH_WRAPPER:-} "$VWATCH" --log-level debug --backend "${VWATCH_BACKEND:-inotify}" "$@" >>"$LOG" 2>&1 &
    VWATCH_PID=$!
    wait_for "log_has 'ready: watching' || ! kill -0 $VWATCH_PID 2>/dev/null" 20
    kill -0 "$VWATCH_PID" 2>/dev/null || { sed 's/^/    log: /' "$LOG" >&2; return 1; }
}

# stop_vwatch: SIGTERM; vwatch must exit 0 (a crash at shutdown, or a
# sanitizer's leak report, fails the test that started it).
stop_vwatch() {
    [[ -n ${VWATCH_PID:-} ]] || return 0
    local i rc=0
    if kill -0 "$VWATCH_PID" 2>/dev/null; then
        kill -TERM "$VWATCH_PID"
        for ((i = 0; i < 200; i++)); do kill -0 "$VWATCH_PID" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$VWATCH_PID" 2>/dev/null
    fi
    wait "$VWATCH_PID" 2>/dev/null || rc=$?
    VWATCH_PID=
    if [[ $rc -ne 0 ]]; then
        echo "vwatch exited with status $rc on SIGTERM" >&2
        [[ -f ${LOG:-} ]] && sed 's/^/    log: /' "$LOG" >&2
        return 1
    fi
}

# wait_for COMMAND [TIMEOUT]: polls COMMAND (a string for eval) until it
# succeeds; fails after TIMEOUT seconds (default 10), printing the log.
wait_for() {
    local deadline=$(( $(date +%s%N) + ${2:-10} * 1000000000 ))
    while ! eval "$1"; do
        if (( $(date +%s%N) > deadline )); then
            echo "timed out waiting for: $1" >&2
            [[ -f ${LOG:-} ]] && sed 's/^/    log: /' "$LOG" >&2
            return 1
        fi
        sleep 0.05
    done
}

# wait_for_log PATTERN [TIMEOUT] [COUNT]: until the log has COUNT (default 1)
# lines matching the extended regex PATTERN.
log_has() { [[ $(grep -cE -- "$1" "$LOG") -ge ${2:-1} ]]; }
wait_for_log() { wait_for "log_has $(printf %q "$1") ${3:-1}" "${2:-10}"; }

log_count() { grep -cE -- "$1" "$LOG" || true; }
rebuild_count() { grep -c '^start ' "$SANDBOX/rebuilds.log" || true; }

# wait_until_clean [N]: the daemon logged its N-th "clean" for the sandbox volume.
wait_until_clean() { wait_for_log "$VOL: clean" 15 "${1:-1}"; }
