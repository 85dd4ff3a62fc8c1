#!/usr/bin/env python3
"""Independent oracle for the helper layout (docs/helpers.md).

helper_check.py [--entries ID] TARGET FILE... prints the version every
listed file in the live slot carries ("gen N" on its first line) and exits 0
when the live slot is complete and all files agree; exits 1 with a reason
otherwise. Without FILEs it checks the layout alone (and the entries) and
prints the live generation and slot.

With --entries ID it also checks the boot loader entries of that id
(T/loader/entries/ID-GEN[+LEFT[-DONE]].conf): every one names, on its linux
and initrd lines, files of one slot that is sealed with the entry's
generation and holds them at their manifest size; the live generation has an
entry; and the entry systemd-boot 252 boots by default (no tries left sorts
last, then the highest version) names the live slot, or a slot sealed with a
newer generation (the switch writes the entry just before the pointer).
"""
import json
import os
import re
import sys


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def parse_pointer(path):
    try:
        text = open(path, "rb").read()
    except OSError:
        return None
    cut = text.find(b"check=")
    if cut < 0:
        return None
    body, check = text[:cut], text[cut + 6:].strip()
    if check.decode(errors="replace") != "%016x" % fnv1a64(body):
        return None
    fields = dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)
    if fields.get("slot") not in ("a", "b", "c") or not fields.get("generation", "").isdigit():
        return None
    return fields["slot"], int(fields["generation"])


def read_manifest(base, slot):
    try:
        return json.load(open(os.path.join(base, "slot-" + slot, "MANIFEST.json")))
    except (OSError, ValueError):
        return None


def check_entries(target, entry_id, live):
    """Returns None when the entries of entry_id agree with the slots, else why not."""
    base = os.path.join(target, "volwatch")
    name_re = re.compile(re.escape(entry_id) + r"-(0|[1-9][0-9]*)(?:\+(0|[1-9][0-9]*)(?:-(0|[1-9][0-9]*))?)?\.conf")
    entries_dir = os.path.join(target, "loader", "entries")
    found = []
    for name in sorted(os.listdir(entries_dir)) if os.path.isdir(entries_dir) else []:
        m = name_re.fullmatch(name)
        if not m:
            continue
        generation = int(m.group(1))
        left = int(m.group(2)) if m.group(2) is not None else None
        try:
            text = open(os.path.join(entries_dir, name), encoding="utf-8").read()
        except (OSError, ValueError) as e:
            return "%s: unreadable: %s" % (name, e)
        slots, paths = set(), []
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if key not in ("linux", "initrd"):
                continue
            m2 = re.fullmatch(r"/volwatch/slot-([ab])/(.+)", value.strip())
            if not m2:
                return "%s: %s %r is not in a slot" % (name, key, value)
            slots.add(m2.group(1))
            paths.append(m2.group(2))
        if len(slots) != 1 or "linux" not in [l.split(" ")[0] for l in text.splitlines()]:
            return "%s: names no single slot with a linux line" % name
        slot = slots.pop()
        manifest = read_manifest(base, slot)
        if not manifest or manifest.get("generation") != generation:
            return "%s names slot %s, not sealed with generation %d" % (name, slot, generation)
        for rel in paths:
            path = os.path.join(base, "slot-" + slot, rel)
            entry = manifest["files"].get(rel)
            if entry is None or not os.path.isfile(path) or os.path.getsize(path) != entry["size"]:
                return "%s names %s, missing from slot %s or not its manifest's size" % (name, rel, slot)
        found.append((left == 0, -generation, name, slot, generation))
    if live is None:
        return None
    slot, generation = live
    if not any(g == generation for _, _, _, _, g in found):
        return "no entry for the live generation %d" % generation
    found.sort()
    _, _, name, default_slot, default_generation = found[0]
    if default_slot != slot and default_generation <= generation:
        return "the default entry %s names slot %s (generation %d), not the live slot %s (generation %d)" % (
            name, default_slot, default_generation, slot, generation)
    return None


def main():
    args = sys.argv[1:]
    entry_id = None
    if args[:1] == ["--entries"]:
        entry_id, args = args[1], args[2:]
    target, files = args[0], args[1:]
    base = os.path.join(target, "volwatch")
    best = None
    for name in ("current", "current.new"):
        pointer = parse_pointer(os.path.join(base, name))
        if not pointer or (best and best[1] >= pointer[1]):
            continue
        try:
            manifest = json.load(open(os.path.join(base, "slot-" + pointer[0], "MANIFEST.json")))
        except (OSError, ValueError):
            continue
        if manifest.get("generation") != pointer[1]:
            continue
        best = (pointer[0], pointer[1], manifest)
    if not best:
        print("no live slot")
        return 1
    slot, generation, manifest = best
    if entry_id is not None:
        problem = check_entries(target, entry_id, (slot, generation))
        if problem:
            print("entries: " + problem)
            return 1
    if not files:   # only the layout (and the entries): no versions to compare
        print("generation %d, slot %s" % (generation, slot))
        return 0
    versions = set()
    for rel in files:
        path = os.path.join(base, "slot-" + slot, rel)
        try:
            with open(path, "rb") as f:
                head = f.read(128)
            size = os.path.getsize(path)
        except OSError:
            print("missing %s in slot %s (generation %d)" % (rel, slot, generation))
            return 1
        entry = manifest["files"].get(rel)
        if entry is None or entry["size"] != size:
            print("%s does not match the manifest of slot %s" % (rel, slot))
            return 1
        lines = head.split(b"\n")
        first = lines[0].decode(errors="replace")
        size_line = lines[1].decode(errors="replace") if len(lines) > 2 else ""
        if not first.startswith("gen ") or size_line != "size %d" % size:
            print("%s is truncated or foreign: %r" % (rel, first))
            return 1
        versions.add(first[4:])
    if len(versions) != 1:
        print("mixed set: %s" % sorted(versions))
        return 1
    print(versions.pop())
    return 0


sys.exit(main())
