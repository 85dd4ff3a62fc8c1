#!/usr/bin/env bats
# vrebuild --json (a real run and a --dry-run) validates against
# docs/schema/vrebuild.schema.json.

bats_require_minimum_version 1.5.0

load common

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}

setup() { make_sandbox; }
teardown() { remove_sandbox; }

@test "--json validates against docs/schema/vrebuild.schema.json (real run and --dry-run)" {
    "$PYTHON" -c 'import jsonschema' 2>/dev/null || skip "python3-jsonschema is not installed"
    # Two helper targets, one of them missing, and a second cache that fails,
    # so the report shows rebuilt, failed, would-rebuild, updated and
    # would-update entries.
    mkdir -p "$VOL/boot" "$SANDBOX/esp1"
    echo kernel > "$VOL/boot/vmlinuz"
    printf '\n[helpers]\nfiles = ["boot/vmlinuz", "out/pack.tgz"]\n' >> "$VOL/etc/volwatch/bootcaches.toml"
    printf '\n[[helpers]]\nvolume = "%s"\ntargets = ["%s/esp1", "%s/esp2"]\n' "$VOL" "$SANDBOX" "$SANDBOX" >> "$HOST"

    run --separate-stderr "$VREBUILD" --dry-run --json "$VOL"
    [ "$status" -eq 1 ]  # the plan already shows esp2 failing
    echo "$output" > "$SANDBOX/dry-run.json"

    mkdir "$SANDBOX/esp2"
    run --separate-stderr "$VREBUILD" --json "$VOL"
    [ "$status" -eq 0 ]
    echo "$output" > "$SANDBOX/real.json"

    # A failed rebuild: its product is held back, the new kernel is still
    # copied (it does not depend on "pack" here), the volume exits 1.
    echo "kernel 2" > "$VOL/boot/vmlinuz"
    sed -i '/^\[rebuilders\]/a broken = { argv = ["sh", "-c", "exit 3"] }' "$HOST"
    sed -i 's/^rebuild = .*/rebuild = "broken"/' "$VOL/etc/volwatch/bootcaches.toml"
    run --separate-stderr "$VREBUILD" --json "$VOL" "$SANDBOX/not-a-volume"
    [ "$status" -eq 66 ]
    echo "$output" > "$SANDBOX/failed.json"

    "$PYTHON" - "$VOLWATCH_SOURCE_DIR/docs/schema/vrebuild.schema.json" "$SANDBOX" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
docs = {name: json.load(open(f"{sys.argv[2]}/{name}.json")) for name in ("dry-run", "real", "failed")}
for name, doc in docs.items():
    try:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as error:
        sys.exit(f"{name}: {error}")

dry = docs["dry-run"]
assert dry["dry_run"] is True and dry["exit_code"] == 1, dry  # the plan shows esp2 failing
v = dry["volumes"][0]
assert [c["action"] for c in v["caches"]] == ["would-rebuild"], v["caches"]
assert [h["outcome"] for h in v["helpers"]] == ["would-update", "failed"], v["helpers"]

real = docs["real"]
assert real["dry_run"] is False and real["exit_status"] == "ok", real
v = real["volumes"][0]
assert v["problem"] is None and v["exit_code"] == 0, v
assert [c["action"] for c in v["caches"]] == ["rebuilt"], v["caches"]
assert [h["outcome"] for h in v["helpers"]] == ["updated", "updated"], v["helpers"]
assert all(h["generation"] == 1 and h["bytes"] > 0 for h in v["helpers"]), v["helpers"]

failed = docs["failed"]
assert failed["exit_code"] == 66 and failed["exit_status"] == "unknown-volume", failed
assert [e["argument"] for e in failed["errors"]] == [sys.argv[2] + "/not-a-volume"], failed["errors"]
v = failed["volumes"][0]
assert (v["exit_code"], v["exit_status"]) == (1, "stale"), v
assert v["caches"][0]["action"] == "failed" and v["caches"][0]["status"] == 3, v["caches"]
for h in v["helpers"]:
    assert h["outcome"] == "updated" and h["files"] == ["boot/vmlinuz"], h
    assert h["held_back"] == [{"file": "out/pack.tgz", "caches": ["pack"],
                               "reason": "the product of cache pack, which failed (the rebuilder exited with status 3)"}], h
PY
}
