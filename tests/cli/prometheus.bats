#!/usr/bin/env bats
# shellcheck disable=SC2154  # bats sets status and output
# Monitoring: `vcheck --format=prometheus` passes `promtool check metrics` in
# every state a volume can be in, contrib/prometheus/volwatch.rules.yml passes
# `promtool check rules` and its unit tests (`promtool test rules`), and its
# alerts fire on what the real vcheck reports, for the volumes they are for.

bats_require_minimum_version 1.5.0

load common

VREBUILD=${VREBUILD:-$VOLWATCH_BUILD_DIR/tools/vrebuild}
VLOCK=${VLOCK:-$VOLWATCH_BUILD_DIR/tools/vlock}
RULES=$VOLWATCH_SOURCE_DIR/contrib/prometheus

setup_file() {
    command -v promtool >/dev/null ||
        skip "promtool is not installed (scripts/deps.sh test, as root, unpacks it from Debian's prometheus package)"
}

setup() {
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

# add_volume NAME BOOTCACHES: a volume root $SANDBOX/NAME with that volume config.
add_volume() {
    mkdir -p "$SANDBOX/$1/etc/volwatch" "$SANDBOX/$1/src"
    echo "source of $1" >"$SANDBOX/$1/src/file"
    printf '%s\n' "$2" >"$SANDBOX/$1/etc/volwatch/bootcaches.toml"
}

PACK='version = 1
[[cache]]
name    = "pack"
sources = ["src"]
product = "out/pack.tgz"
rebuild = "pack"'

# every_state: one sandbox with a volume in each state vcheck reports, in
# one host config, and $METRICS holding `vcheck --all --format=prometheus`.
every_state() {
    SANDBOX=$(mktemp -d "${BATS_TMPDIR:-/tmp}/volwatch-prom.XXXXXX")
    chmod 755 "$SANDBOX"
    mkdir -p "$SANDBOX/locks" "$SANDBOX/efi"
    add_volume clean "$PACK"
    add_volume stale "$PACK"
    add_volume locked "$PACK"
    add_volume abandoned "$PACK"
    add_volume gaveup "${PACK/rebuild = \"pack\"/rebuild = \"broken\"}"
    add_volume bad "$PACK
colour = \"blue\""
    add_volume helpers 'version = 1
[helpers]
files = ["src/file"]'
    # A root whose path needs escaping in a label value.
    add_volume 'we"ird\vol' "$PACK"
    cat >"$SANDBOX/host.toml" <<TOML
lock_dir = "$SANDBOX/locks"
discover = false
max_failures = 1
volumes = ["$SANDBOX/clean", "$SANDBOX/stale", "$SANDBOX/locked", "$SANDBOX/abandoned", "$SANDBOX/gaveup", "$SANDBOX/bad",
           "$SANDBOX/helpers", "$SANDBOX/we\\"ird\\\\vol", "$SANDBOX/absent"]

[rebuilders]
pack   = { argv = ["sh", "-c", "mkdir -p \"\$1/out\" && tar -C \"\$1\" -czf \"\$1/out/pack.tgz\" src", "pack", "{root}"] }
broken = { argv = ["false"] }

[[helpers]]
volume  = "$SANDBOX/helpers"
targets = ["$SANDBOX/efi", "$SANDBOX/efi-not-mounted"]
TOML
    export VOLWATCH_CONFIG=$SANDBOX/host.toml
    "$VREBUILD" "$SANDBOX/clean" 2>/dev/null
    "$VREBUILD" "$SANDBOX/locked" 2>/dev/null
    run "$VREBUILD" "$SANDBOX/gaveup"
    [ "$status" -eq 1 ]
    sleep 300 &
    pids+=($!)
    "$VLOCK" "$SANDBOX/locked" --owner "${pids[0]}" --purpose "kernel update"
    # An owner killed with -9 and no vwatch to tidy up: an abandoned lock.
    "$VREBUILD" "$SANDBOX/abandoned" 2>/dev/null
    sleep 300 &
    local doomed=$!
    "$VLOCK" "$SANDBOX/abandoned" --owner "$doomed"
    kill -KILL "$doomed"
    wait "$doomed" 2>/dev/null || true
    # vcheck exits 65 for the bad volume config; the metrics come all the same.
    run --separate-stderr "$VCHECK" --all --format=prometheus
    echo "vcheck exit $status; $stderr"
    [ "$status" -eq 65 ]
    METRICS=$SANDBOX/volwatch.prom
    printf '%s\n' "$output" >"$METRICS"
}

# metric NAME VOLUME [EXTRA-LABEL-MATCH]: the value of NAME for VOLUME's root.
metric() {
    grep -F "$1{volume=\"$SANDBOX/$2\"" "$METRICS" | grep -F -- "${3:-}" | awk '{ print $NF }'
}

@test "prometheus: vcheck's metrics in every state pass promtool check metrics" {
    every_state
    cat "$METRICS"
    run promtool check metrics <"$METRICS"
    echo "$output"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    # And each state shows where the alerts look for it.
    [ "$(metric volwatch_volume_stale clean)" = 0 ]
    [ "$(metric volwatch_volume_stale stale)" = 1 ]
    [ "$(metric volwatch_volume_locked locked)" = 1 ]
    [ "$(metric volwatch_volume_lock_abandoned locked)" = 0 ]
    [ "$(metric volwatch_volume_lock_abandoned abandoned)" = 1 ]
    [ "$(metric volwatch_volume_locked abandoned)" = 0 ]
    [ "$(metric volwatch_volume_failures abandoned)" = 1 ]
    [ "$(metric volwatch_volume_gave_up gaveup)" = 1 ]
    [ "$(metric volwatch_volume_failures gaveup)" = 1 ]
    [ "$(metric volwatch_volume_config_error bad)" = 1 ]
    [ "$(metric volwatch_volume_absent absent)" = 1 ]
    [ "$(metric volwatch_helper_stale helpers "target=\"$SANDBOX/efi\"")" = 1 ]
    [ "$(metric volwatch_helper_error helpers "target=\"$SANDBOX/efi-not-mounted\"")" = 1 ]
    grep -qF "volwatch_volume_stale{volume=\"$SANDBOX/we\\\"ird\\\\vol\"" "$METRICS"
}

@test "prometheus: no volumes at all is valid too" {
    make_sandbox
    printf 'lock_dir = "%s"\ndiscover = false\n' "$SANDBOX/locks" >"$HOST"
    "$VCHECK" --all --format=prometheus >"$SANDBOX/volwatch.prom"
    grep -q '^# TYPE volwatch_volume_stale gauge$' "$SANDBOX/volwatch.prom"
    run -1 grep -v '^#' "$SANDBOX/volwatch.prom"
    promtool check metrics <"$SANDBOX/volwatch.prom"
}

@test "prometheus: the alert rules pass promtool check rules and their unit tests" {
    run promtool check rules "$RULES/volwatch.rules.yml"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"SUCCESS: 6 rules found"* ]]
    run promtool test rules "$RULES/volwatch.rules.test.yml"
    echo "$output"
    [ "$status" -eq 0 ]
    # Every alert has a unit test in which it fires.
    "$PYTHON" - "$RULES" <<'PY'
import sys, yaml
rules = yaml.safe_load(open(f"{sys.argv[1]}/volwatch.rules.yml"))
tests = yaml.safe_load(open(f"{sys.argv[1]}/volwatch.rules.test.yml"))
alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
fired = {t["alertname"] for test in tests["tests"] for t in test["alert_rule_test"] if t["exp_alerts"]}
assert alerts == fired, (alerts, fired)
PY
}

@test "prometheus: the alerts fire on real vcheck output, for the volumes they are for" {
    command -v "$PYTHON" >/dev/null && "$PYTHON" -c 'import yaml' 2>/dev/null || skip "python3-yaml is not installed"
    every_state
    # Two hours of vcheck's samples as they are, plus a metrics file last written
    # at time 0; the rules without their annotations (the unit tests above
    # check those), so that only which alert fires for which labels is compared.
    "$PYTHON" - "$RULES/volwatch.rules.yml" "$METRICS" "$SANDBOX" <<'PY'
import re, sys, yaml
rules_file, metrics_file, sandbox = sys.argv[1:]
rules = yaml.safe_load(open(rules_file))
for group in rules["groups"]:
    for rule in group["rules"]:
        rule.pop("annotations", None)
yaml.safe_dump(rules, open(f"{sandbox}/rules.yml", "w"))

series = [{"series": 'node_textfile_mtime_seconds{file="/var/lib/node_exporter/textfile/volwatch.prom"}', "values": "0x150"}]
for line in open(metrics_file):
    if line.startswith("#") or not line.strip():
        continue
    name_labels, value = line.rsplit(" ", 1)
    series.append({"series": name_labels, "values": f"{value.strip()}x150"})

def vol(name, **extra):
    return dict({"volume": f"{sandbox}/{name}"}, **extra)
def unescape(value):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
def ids(name):
    for line in open(metrics_file):
        m = re.match(r'volwatch_volume_stale\{volume="((?:[^"\\]|\\.)*)",id="([^"]*)"\}', line)
        if m and unescape(m.group(1)) == f"{sandbox}/{name}":
            return m.group(2)
    raise SystemExit(f"no id for {name}")
def labels(name, severity, **extra):
    return {"exp_labels": dict(vol(name, **extra), id=ids(name), severity=severity)}

expected = {
    # "locked" is stale but rebuilding, "gaveup" has its own alert, "clean" is clean.
    "VolwatchVolumeStale": [labels("stale", "warning"), labels("helpers", "warning"),
                            {"exp_labels": {"volume": f'{sandbox}/we"ird\\vol', "id": ids('we"ird\\vol'), "severity": "warning"}}],
    # "abandoned" reached max_failures = 1 with its dead owner's failure counted.
    "VolwatchGaveUp": [labels("gaveup", "critical"), labels("abandoned", "critical")],
    "VolwatchLockAbandoned": [labels("abandoned", "warning")],
    "VolwatchHelperDrift": [labels("helpers", "warning", target=f"{sandbox}/efi"),
                            labels("helpers", "warning", target=f"{sandbox}/efi-not-mounted")],
    "VolwatchConfigError": [labels("bad", "warning")],
    "VolwatchMetricsStale": [{"exp_labels": {"severity": "warning", "file": "/var/lib/node_exporter/textfile/volwatch.prom"}}],
}
test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series,
                   "alert_rule_test": [{"eval_time": "2h", "alertname": a, "exp_alerts": e} for a, e in expected.items()]}]}
yaml.safe_dump(test, open(f"{sandbox}/real.test.yml", "w"))
PY
    run promtool test rules "$SANDBOX/real.test.yml"
    echo "$output"
    [ "$status" -eq 0 ]
}
