#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status, output and stderr
# The real `vlock --json` and `vlock --list --json` output, in each of its
# shapes, validates against docs/schema/vlock.schema.json: the lock taken,
# refused (busy, -E, a timed-out wait, the reboot lock), and listings of
# free, locked (with waiters), abandoned and given-up volumes and of a held
# reboot lock.

load lock_common

SCHEMA=$VOLWATCH_SOURCE_DIR/docs/schema/vlock.schema.json
PYTHON=${PYTHON:-/usr/bin/python3}

setup() {
    "$PYTHON" -c 'import jsonschema' 2>/dev/null || skip "python3-jsonschema is not installed"
    lock_setup
}

teardown() { lock_teardown; }

# validate CHECK: validates $output (stdout only: run --separate-stderr)
# against the schema, then runs the Python statement CHECK with the document
# as `doc`.
validate() {
    printf '%s\n' "$output" >"$T/out.json"
    "$PYTHON" - "$SCHEMA" "$T/out.json" "${1:-pass}" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
exec(sys.argv[3])
PY
}

@test "the schema is a valid JSON Schema and rejects output that breaks its rules" {
    "$PYTHON" - "$SCHEMA" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
locked = {"volume": "/", "volume_id": "uuid-2f6b8c1e", "result": "locked", "owner": 42, "waited_ms": 0, "exit_code": 0}
refused = {"volume": "/", "volume_id": "uuid-2f6b8c1e", "result": "busy", "message": "busy: held by pid 7", "exit_code": 75}
me = {"pid": 42, "start_time": 1000, "boot_id": "b", "alive": True}
record = {"volume_id": "path-0123456789abcdef", "volume": "/srv/img", "state": "locked",
          "holder": {"pid": 42, "command": "sh", "purpose": "vlock", "since": "2025-01-02T03:04:05Z", "since_unix": 1.5},
          "owners": [me], "waiters": [dict(me, pid=43, alive=True, position=1, ticket=2)],
          "failures": 0, "max_failures": 5, "attempts": 0, "max_attempts": 25, "last_status": 0,
          "last_success": "", "last_success_unix": 0, "gave_up": False}
listing = {"lock_dir": "/run/volwatch", "reboot": {"held": False, "holder": None}, "volumes": [record]}
for good in (locked, refused, dict(refused, exit_code=3), listing,
             dict(refused, result="reboot-in-progress", exit_code=5)):
    assert v.is_valid(good), list(v.iter_errors(good))
for bad in (
    dict(locked, exit_code=75),                                   # locked, yet not 0
    dict(locked, owner=0),
    {k: x for k, x in locked.items() if k != "waited_ms"},
    dict(refused, result="locked"),                               # a refusal that says locked
    dict(refused, result="reboot-in-progress", exit_code=75),     # 5 is its own code
    dict(refused, message=""),
    dict(locked, volume_id="sda1"),                               # ids never name devices
    dict(listing, reboot={"held": True, "holder": None}),
    dict(listing, volumes=[dict(record, holder=None)]),           # locked without a holder
    dict(listing, volumes=[dict(record, state="free")]),          # free with owners
    dict(listing, volumes=[dict(record, state="abandoned", holder=None)]),  # abandoned by a live owner
    dict(listing, volumes=[dict(record, waiters=[dict(me, position=0, ticket=2)])]),
    dict(listing, volumes=[dict(record, last_success="", last_success_unix=5)]),
    dict(listing, volumes=[dict(record, last_status=-2)]),
    {k: x for k, x in listing.items() if k != "reboot"},
):
    assert not v.is_valid(bad), bad
PY
}

@test "vlock --json, taken: the outcome names the owner" {
    spawn sleep 60
    local owner=$SPAWNED
    run --separate-stderr "$VLOCK" "$V" --owner "$owner" --json
    [ "$status" -eq 0 ]
    validate "
assert doc['result'] == 'locked' and doc['owner'] == $owner and doc['exit_code'] == 0, doc
assert doc['volume'] == '$V' and doc['volume_id'].startswith(('uuid-', 'dev-', 'path-')), doc
assert 0 <= doc['waited_ms'] < 5000, doc
"
}

@test "vlock --json, busy, with -E, and after a timed-out wait: refusals that name the holder" {
    spawn_exec sleep 60
    "$VLOCK" "$V" --owner "$SPAWNED" --purpose "kernel update"
    run --separate-stderr "$VLOCK" "$V" --json
    [ "$status" -eq 75 ]
    validate "
assert doc['result'] == 'busy' and doc['exit_code'] == 75, doc
assert doc['message'].startswith('busy: held by pid $SPAWNED (sleep 60) since '), doc
"
    run --separate-stderr "$VLOCK" "$V" -E 3 --json
    [ "$status" -eq 3 ]
    validate 'assert doc["result"] == "busy" and doc["exit_code"] == 3, doc'
    run --separate-stderr "$VLOCK" "$V" --wait=300ms --json
    [ "$status" -eq 75 ]
    validate 'assert doc["result"] == "busy" and doc["exit_code"] == 75, doc'
}

@test "vlock --json while the reboot lock is held: reboot-in-progress, exit 5; --list --json names its holder" {
    spawn sleep 60
    local holder=$SPAWNED
    mkdir -p "$LOCKS"
    chmod 755 "$LOCKS"
    printf 'volwatch-lock=1\nowner=%s\ncommand=vrebootgate --wait=10m\nsince=1764042184.250\n' "$(identity "$holder")" \
        >"$LOCKS/reboot.lock"
    spawn sleep 60
    run --separate-stderr "$VLOCK" "$V" --owner "$SPAWNED" --json
    [ "$status" -eq 5 ]
    validate 'assert doc["result"] == "reboot-in-progress" and doc["exit_code"] == 5, doc'
    run --separate-stderr "$VLOCK" --list --json
    [ "$status" -eq 0 ]
    validate "
r = doc['reboot']
assert r['held'] is True and r['holder']['pid'] == $holder, r
assert r['holder']['since'] == '2025-11-25T03:43:04Z' and r['holder']['command'] == 'vrebootgate --wait=10m', r
"
}

@test "vlock --list --json: nothing yet, then a locked volume with a waiter, then abandoned" {
    run --separate-stderr "$VLOCK" --list --json
    [ "$status" -eq 0 ]
    validate "assert doc['volumes'] == [] and doc['reboot'] == {'held': False, 'holder': None} and doc['lock_dir'] == '$LOCKS', doc"

    spawn sleep 60
    local owner=$SPAWNED
    "$VLOCK" "$V" --owner "$owner" --purpose listing
    spawn "$VLOCK" "$V" --wait -- true
    local waiter=$SPAWNED
    wait_until 5 has_waiters 1
    run --separate-stderr "$VLOCK" --list --json
    [ "$status" -eq 0 ]
    validate "
r = doc['volumes'][0]
assert r['state'] == 'locked' and r['volume'] == '$V', r
assert r['holder']['pid'] == $owner and r['holder']['purpose'] == 'listing', r
assert [o['pid'] for o in r['owners']] == [$owner], r
w = r['waiters']
assert len(w) == 1 and w[0]['position'] == 1 and w[0]['alive'] is True, w
assert r['last_success'] == '' and r['last_success_unix'] == 0, r
"
    # The owner dies without unlocking; the waiter is stopped first, so the
    # record stays as the dead owner left it.
    kill "$waiter"
    wait "$waiter" 2>/dev/null || true
    kill "$owner"
    wait "$owner" 2>/dev/null || true
    run --separate-stderr "$VLOCK" --list --json "$V"
    [ "$status" -eq 0 ]
    validate "
r = doc['volumes'][0]
assert r['state'] == 'abandoned' and r['holder'] is None, r
assert r['owners'][0]['pid'] == $owner and r['owners'][0]['alive'] is False, r
"
}

@test "vlock --list --json: failures counted up to giving up, then a success resets them" {
    write_host_config "max_failures = 2"
    local n
    for n in 1 2; do
        run "$VLOCK" "$V" -- sh -c 'exit 4'
        [ "$status" -eq 4 ]
    done
    run --separate-stderr "$VLOCK" --list --json
    validate '
r = doc["volumes"][0]
assert r["state"] == "free" and r["owners"] == [] and r["holder"] is None, r
assert r["failures"] == 2 and r["max_failures"] == 2 and r["last_status"] == 4 and r["gave_up"] is True, r
'
    "$VLOCK" "$V" -- true
    run --separate-stderr "$VLOCK" --list --json
    validate '
r = doc["volumes"][0]
assert r["failures"] == 0 and r["gave_up"] is False and r["last_status"] == 0, r
assert r["last_success"].endswith("Z") and r["last_success_unix"] > 0, r
'
}
