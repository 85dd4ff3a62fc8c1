#!/usr/bin/env bats
# Mutual exclusion under chaos (DESIGN §11): 16 clients loop on
# `vlock V --wait -- sh section.sh`, where the section increments a shared
# counter non-atomically and logs its entry and exit, while a chaos loop
# kill -9s random vlock processes: waiters in the queue, and owners whose
# command runs on under the lock. Seeded and bounded; the seed is printed.
#
# The chaos never kills a section itself: a holder that dies half-way through
# a read-modify-write corrupts the counter whatever the lock does. That an
# owner's death frees the lock is tested in vlock.bats.
#   VOLWATCH_STRESS_SEED=N      replay a run
#   VOLWATCH_STRESS_SECONDS=N   how long the clients run (default 20)

load lock_common

setup() { lock_setup; }
teardown() { lock_teardown; }

@test "stress: no overlap, no lost update, no waiter lost, no lock left to the dead" {
    local seed=${VOLWATCH_STRESS_SEED:-$(date +%s)} seconds=${VOLWATCH_STRESS_SECONDS:-20} clients=16
    RANDOM=$seed
    echo "seed $seed (replay with VOLWATCH_STRESS_SEED=$seed)"
    echo "# lock stress: seed $seed, ${seconds}s, $clients clients" >&3
    echo 0 >"$T/counter"
    : >"$T/events"
    cat >"$T/section.sh" <<'EOF'
echo "enter $(date +%s%N) $$" >>"$1/events"
n=$(cat "$1/counter")
sleep 0.003
echo $((n + 1)) >"$1/counter"
echo "exit $(date +%s%N) $$" >>"$1/events"
EOF
    local end=$((SECONDS + seconds)) i client_pids=()
    for ((i = 0; i < clients; i++)); do
        spawn bash -c 'while ((SECONDS < $1)); do "$VLOCK" "$2" --wait=60s -- sh "$3/section.sh" "$3"; done' \
            _ "$end" "$V" "$T"
        client_pids+=("$SPAWNED")
    done

    local kills=0 victim
    while ((SECONDS < end)); do
        sleep "0.0$((RANDOM % 6 + 2))"
        # The client loop's only child is its current vlock (owner or waiter).
        victim=$(pgrep -P "${client_pids[RANDOM % clients]}" | head -n 1) || continue
        [[ -n $victim ]] && kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1))
    done
    for i in "${client_pids[@]}"; do wait "$i" || true; done

    # Sections whose vlock was killed finish on their own, under the lock.
    run --separate-stderr "$VLOCK" "$V" --wait=30s -- true
    [ "$status" -eq 0 ]

    local entries exits counter
    entries=$(grep -c '^enter ' "$T/events")
    exits=$(grep -c '^exit ' "$T/events")
    counter=$(cat "$T/counter")
    echo "kills $kills, sections entered $entries, completed $exits, counter $counter"
    echo "# kills $kills, sections $exits, counter $counter" >&3
    # Entries and exits strictly alternate, by the same process, in time order.
    awk '
        { if ($2 < last) { print "time went back at line " NR ": " $0; bad = 1 } last = $2 }
        $1 == "enter" { if (inside) { print "overlap at line " NR ": " $0 " while " holder " holds"; bad = 1 } inside = 1; holder = $3; next }
        $1 == "exit" { if (!inside || $3 != holder) { print "unmatched exit at line " NR ": " $0; bad = 1 } inside = 0 }
        END { exit bad }
    ' "$T/events"
    [ "$counter" -eq "$exits" ]
    [ "$entries" -eq "$exits" ]
    # The run was a real test: the chaos hit, and work got done.
    ((kills >= 20))
    ((exits >= 50))

    # Nothing is left held or queued by a dead process.
    run "$VLOCK" --list "$V"
    echo "$output"
    [[ $output == *"  free"* ]]
    [[ $output != *" alive"* ]]
    run --separate-stderr "$VLOCK" "$V" -- true
    [ "$status" -eq 0 ]
    run "$VLOCK" --list --json "$V"
    [[ $output == *'"waiters": []'* ]]
}
