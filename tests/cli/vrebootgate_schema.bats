#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status, output and stderr
# The real `vrebootgate --json` and `vrebootgate --status --json` output, in
# each of its shapes, validates against docs/schema/vrebootgate.schema.json.

bats_require_minimum_version 1.5.0

load common

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
VREBOOTGATE=${VREBOOTGATE:-$VOLWATCH_BUILD_DIR/tools/vrebootgate}
VLOCK=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}
SCHEMA=$VOLWATCH_SOURCE_DIR/docs/schema/vrebootgate.schema.json

setup() {
    "$PYTHON" -c 'import jsonschema' 2>/dev/null || skip "python3-jsonschema is not installed"
    make_sandbox
    export VOLWATCH_VREBUILD=$VREBUILD
    pids=()
}

teardown() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    remove_sandbox
}

# start_owner: a background process ($owner) to own a lock, killed in teardown.
start_owner() {
    sleep 300 &
    owner=$!
    pids+=("$owner")
}

# validate CHECK: validates $output (stdout only: run --separate-stderr)
# against the schema, then runs the Python statement CHECK with the document
# as `doc`.
validate() {
    printf '%s\n' "$output" >"$SANDBOX/out.json"
    "$PYTHON" - "$SCHEMA" "$SANDBOX/out.json" "${1:-pass}" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
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
good = {"version": 1, "granted": True, "already": False, "owner": 42, "waited_seconds": 0.5,
        "blockers": [], "excepted": [], "exit_code": 0}
assert v.is_valid(good)
for bad in (
    dict(good, exit_code=75),                          # granted, yet busy
    dict(good, owner=None),                            # granted to nobody
    {k: x for k, x in good.items() if k != "blockers"},
    dict(good, version=2),
    {"version": 1, "granted": False, "already": True, "exit_code": 0},
    {"version": 1, "held": True, "holder": None, "blockers": [], "excepted": []},
    {"version": 1, "held": False, "holder": None, "blockers": [{"root": "/", "id": "uuid-x"}], "excepted": []},
):
    assert not v.is_valid(bad), bad
PY
}

@test "--status --json, nothing held and a stale volume blocks: exit 75" {
    run --separate-stderr "$VREBOOTGATE" --status --json
    [ "$status" -eq 75 ]
    validate '
assert doc["held"] is False and doc["holder"] is None, doc
b = doc["blockers"][0]
assert b["locked"] is False and b["reason"].startswith("pack: product missing"), b
assert doc["excepted"] == [], doc
'
}

@test "--status --json, nothing held and nothing blocks: exit 0" {
    "$VREBUILD" "$VOL" 2>/dev/null
    run --separate-stderr "$VREBOOTGATE" --status --json
    [ "$status" -eq 0 ]
    validate 'assert doc["held"] is False and doc["blockers"] == [], doc'
}

@test "gate --json without --wait, a stale volume: busy, exit 75" {
    start_owner
    run --separate-stderr "$VREBOOTGATE" --owner "$owner" --json
    [ "$status" -eq 75 ]
    validate '
assert doc["granted"] is False and doc["already"] is False and doc["owner"] is None, doc
assert doc["waited_seconds"] == 0 and doc["exit_code"] == 75, doc
assert doc["blockers"][0]["locked"] is False, doc
'
}

@test "gate --json, a volume locked by a live owner: busy, the blocker is locked" {
    [ -x "$VLOCK" ] || skip "vlock is not built"
    "$VREBUILD" "$VOL" 2>/dev/null
    start_owner
    "$VLOCK" "$VOL" --owner "$owner" --purpose "kernel update"
    start_owner
    run --separate-stderr "$VREBOOTGATE" --owner "$owner" --json --wait=1s
    [ "$status" -eq 75 ]
    validate '
b = doc["blockers"][0]
assert b["locked"] is True and b["reason"].startswith("kernel update running, pid"), b
assert doc["waited_seconds"] >= 1 and doc["exit_code"] == 75, doc
'
}

@test "gate --wait --json rebuilds and is granted; --status --json names the holder; a second gate says already" {
    start_owner
    run --separate-stderr "$VREBOOTGATE" --owner "$owner" --wait=1m --json
    [ "$status" -eq 0 ]
    validate "
assert doc['granted'] is True and doc['already'] is False, doc
assert doc['owner'] == $owner and doc['blockers'] == [] and doc['exit_code'] == 0, doc
"
    run --separate-stderr "$VREBOOTGATE" --status --json
    [ "$status" -eq 0 ]
    validate "
assert doc['held'] is True, doc
h = doc['holder']
assert h['pid'] == $owner and h['command'] == 'sleep 300' and h['since'].endswith('Z'), h
"
    run --separate-stderr "$VREBOOTGATE" --json
    [ "$status" -eq 6 ]
    validate '
assert doc["already"] is True and doc["granted"] is False and doc["exit_code"] == 6, doc
'
}

@test "gate --json with a volume over its limits: granted, the volume excepted" {
    sed -i '/^\[rebuilders\]/a broken = { argv = ["false"], timeout = "1m" }' "$HOST"
    sed -i 's/^rebuild = .*/rebuild = "broken"/' "$VOL/etc/volwatch/bootcaches.toml"
    start_owner
    run --separate-stderr "$VREBOOTGATE" --owner "$owner" --wait=1m --json
    [ "$status" -eq 0 ]
    validate '
assert doc["granted"] is True and doc["blockers"] == [], doc
x = doc["excepted"][0]
assert "gave up after" in x["reason"] and "not waiting for it" in x["reason"], x
'
    run --separate-stderr "$VREBOOTGATE" --status --json
    [ "$status" -eq 0 ]
    validate 'assert doc["held"] is True and len(doc["excepted"]) == 1, doc'
}
