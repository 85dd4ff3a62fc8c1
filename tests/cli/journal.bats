#!/usr/bin/env bats
# The stable events in the systemd journal (docs/events.md): every MESSAGE_ID
# in the code has a catalog entry, the catalog parses, and, as root, with a
# real systemd-journald in a private mount namespace, the programs' events
# arrive natively with their MESSAGE_ID and fields, and `journalctl -x`
# explains them.

load common

VREBOOTGATE=${VREBOOTGATE:-$VOLWATCH_BUILD_DIR/tools/vrebootgate}
VWATCH=${VWATCH:-$VOLWATCH_BUILD_DIR/tools/vwatch}
VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
EVENTS=$VOLWATCH_SOURCE_DIR/libcommon/include/volwatch/events.hpp
CATALOG=$VOLWATCH_SOURCE_DIR/contrib/systemd/volwatch.catalog

setup() {
    make_sandbox
    export VOLWATCH_VREBUILD=$VREBUILD
    pids=()
}

teardown() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    remove_sandbox
}

# "name id" for each event in the code.
events_in_code() {
    sed -n 's/.*{Event::[a-z_]*, "\([a-z-]*\)", "\([0-9a-f]\{32\}\)"}.*/\1 \2/p' "$EVENTS"
}

message_id() { events_in_code | awk -v name="$1" '$1 == name { print $2 }'; }

needs_journald() {
    [[ $(id -u) -eq 0 ]] || skip "needs root to run systemd-journald in a private mount namespace"
    [[ -x /lib/systemd/systemd-journald ]] || skip "systemd-journald is not installed"
    command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
}

# in_journal_namespace COMMAND...: COMMAND beside a private journald.
in_journal_namespace() {
    unshare -m --propagation private bash "$BATS_TEST_DIRNAME/journal_namespace.bash" "$CATALOG" "$@"
}

@test "every event in the code has its own MESSAGE_ID and one catalog entry; the catalog has no other" {
    run events_in_code
    echo "$output"
    [ "${#lines[@]}" -eq "$(grep -c '{Event::' "$EVENTS")" ]
    [ "${#lines[@]}" -ge 5 ]
    code_ids=$(events_in_code | awk '{ print $2 }' | sort)
    [ "$(sort -u <<<"$code_ids" | wc -l)" -eq "${#lines[@]}" ]
    catalog_ids=$(sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$CATALOG" | sort)
    [ "$code_ids" = "$catalog_ids" ]
}

@test "journalctl compiles the catalog on a scratch root and lists every entry" {
    command -v journalctl >/dev/null || skip "journalctl is not installed"
    root=$BATS_TEST_TMPDIR/root
    mkdir -p "$root/usr/lib/systemd/catalog"
    cp "$CATALOG" "$root/usr/lib/systemd/catalog/"
    journalctl --root="$root" --update-catalog
    run journalctl --root="$root" --list-catalog
    echo "$output"
    [ "$status" -eq 0 ]
    while read -r name id; do
        [[ "$output" == *"$id volwatch: "* ]] || { echo "no catalog entry listed for $name ($id)"; return 1; }
    done < <(events_in_code)
    [ "${#lines[@]}" -eq "$(events_in_code | wc -l)" ]
}

@test "docs/events.md and the man pages name every event; the doc gives every MESSAGE_ID" {
    while read -r name id; do
        grep -q "$name" "$VOLWATCH_SOURCE_DIR/docs/events.md" || { echo "docs/events.md lacks $name"; return 1; }
        grep -q "$id" "$VOLWATCH_SOURCE_DIR/docs/events.md" || { echo "docs/events.md lacks $id"; return 1; }
        cat "$VOLWATCH_SOURCE_DIR"/man/vwatch.8.scd "$VOLWATCH_SOURCE_DIR"/man/vrebootgate.8.scd | grep -q "event=$name" ||
            { echo "no man page names event=$name"; return 1; }
    done < <(events_in_code)
}

@test "with a real journald: the gate's shutdown delay is found by MESSAGE_ID with its fields, and journalctl -x explains it" {
    needs_journald
    sleep 300 &
    owner=$!
    pids+=("$owner")
    begins=$(message_id shutdown-delay-begins)
    ends=$(message_id shutdown-delay-ends)
    # As under systemd: standard error is the journal's stream, so the gate
    # sends natively (--log auto).
    : > "$SANDBOX/gate.err"
    stream=$(stat -c '%d:%i' "$SANDBOX/gate.err")
    # shellcheck disable=SC2016
    run in_journal_namespace bash -c '
        JOURNAL_STREAM=$1 "$2" --owner "$3" --wait=1m 2>"$4"
        echo "gate=$?"
        journalctl --sync
        echo "--- begins"; journalctl --no-pager -o export MESSAGE_ID="$5"
        echo "--- ends"; journalctl --no-pager -o export MESSAGE_ID="$6"
        echo "--- explained"; journalctl --no-pager -x MESSAGE_ID="$5"' \
        sh "$stream" "$VREBOOTGATE" "$owner" "$SANDBOX/gate.err" "$begins" "$ends"
    echo "$output"
    echo "stderr:"; cat "$SANDBOX/gate.err"
    [ "$status" -eq 0 ]
    [[ "$output" == *"gate=0"* ]]
    begins_part=${output#*--- begins}
    begins_part=${begins_part%%--- ends*}
    ends_part=${output#*--- ends}
    ends_part=${ends_part%%--- explained*}
    explained=${output#*--- explained}
    for field in "MESSAGE_ID=$begins" "VOLWATCH_EVENT=shutdown-delay-begins" "VOLWATCH_VOLUME=$VOL" "VOLWATCH_STATUS=waiting" \
                 "VOLWATCH_PID=$owner" "SYSLOG_IDENTIFIER=vrebootgate" "PRIORITY=5" "_TRANSPORT=journal"; do
        grep -qx -- "$field" <<<"$begins_part" || { echo "shutdown-delay-begins lacks $field"; return 1; }
    done
    for field in "MESSAGE_ID=$ends" "VOLWATCH_EVENT=shutdown-delay-ends" "VOLWATCH_VOLUME=$VOL" "VOLWATCH_STATUS=granted" \
                 "_TRANSPORT=journal"; do
        grep -qx -- "$field" <<<"$ends_part" || { echo "shutdown-delay-ends lacks $field"; return 1; }
    done
    grep -qE '^VOLWATCH_SECONDS=[0-9]+\.[0-9]$' <<<"$ends_part"
    [[ "$explained" == *"Subject: Shutdown delayed until the boot caches of $VOL are consistent"* ]]
    # The events went to the journal, not to standard error.
    run grep -c 'event=' "$SANDBOX/gate.err"
    [ "$output" = 0 ]
}

@test "with a real journald: vwatch --log journal sends cache-updated with the volume, status, pid and duration" {
    needs_journald
    updated=$(message_id cache-updated)
    # shellcheck disable=SC2016
    run in_journal_namespace bash -c '
        "$1" --log journal --startup-delay 0 --settle 100ms --no-discover 2>"$2" &
        watcher=$!
        for _ in $(seq 300); do
            journalctl --no-pager -q MESSAGE_ID="$3" | grep -q . && break
            sleep 0.1
        done
        kill $watcher; wait $watcher
        echo "--- updated"; journalctl --no-pager -o export MESSAGE_ID="$3"' \
        sh "$VWATCH" "$SANDBOX/vwatch.err" "$updated"
    echo "$output"
    echo "stderr:"; cat "$SANDBOX/vwatch.err"
    [ "$status" -eq 0 ]
    part=${output#*--- updated}
    for field in "MESSAGE_ID=$updated" "VOLWATCH_EVENT=cache-updated" "VOLWATCH_VOLUME=$VOL" "VOLWATCH_STATUS=0" \
                 "SYSLOG_IDENTIFIER=vwatch" "PRIORITY=6" "_TRANSPORT=journal"; do
        grep -qx -- "$field" <<<"$part" || { echo "cache-updated lacks $field"; return 1; }
    done
    grep -qE '^VOLWATCH_VOLUME_ID=.+' <<<"$part"
    grep -qE '^VOLWATCH_PID=[0-9]+$' <<<"$part"
    # vwatch's own lines all went to the journal; standard error holds only
    # the output of the vrebuild it started (which, under systemd, is the
    # journal's stream too).
    run grep -c '^vwatch:' "$SANDBOX/vwatch.err"
    [ "$output" = 0 ]
    grep -q '^vrebuild: ' "$SANDBOX/vwatch.err"
}

@test "without a journal: vwatch --log journal falls back to syslog, each event a line with its name, fields and priority" {
    [[ $(id -u) -eq 0 ]] || skip "needs root to hide the journal and own /dev/log in a private mount namespace"
    command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
    # shellcheck disable=SC2016
    run unshare -m --propagation private bash "$BATS_TEST_DIRNAME/syslog_namespace.bash" "$SANDBOX/syslog" bash -c '
        "$1" --log journal --startup-delay 0 --settle 100ms --no-discover 2>"$2" &
        watcher=$!
        for _ in $(seq 300); do
            grep -q "event=cache-updated" "$3" && break
            sleep 0.1
        done
        kill $watcher; wait $watcher' \
        sh "$VWATCH" "$SANDBOX/vwatch.err" "$SANDBOX/syslog"
    echo "$output"
    echo "--- syslog"; cat "$SANDBOX/syslog"
    echo "--- stderr"; cat "$SANDBOX/vwatch.err"
    [ "$status" -eq 0 ]
    # <facility daemon (3) * 8 + priority (info, 6)>, then the identifier
    # and pid, as openlog(LOG_PID, LOG_DAEMON) makes them.
    # The line is the one standard error would show, ending in event=NAME
    # (docs/events.md); the journal's extra fields have no place in syslog.
    grep -qE "^<30>.* vwatch\[[0-9]+\]: $VOL: cache updated by vrebuild \(pid [0-9]+, [0-9.]+s\) event=cache-updated\$" "$SANDBOX/syslog"
    grep -qE "^<[0-9]+>.* vwatch\[[0-9]+\]: ready: watching" "$SANDBOX/syslog"
    # vwatch's own lines all went to syslog, none to standard error.
    run grep -c '^vwatch:' "$SANDBOX/vwatch.err"
    [ "$output" = 0 ]
}
