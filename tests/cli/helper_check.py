#!/usr/bin/env python3
"""Independent oracle for the helper layout (docs/helpers.md).

helper_check.py TARGET FILE... prints the version every listed file in the
live slot carries ("gen N" on its first line) and exits 0 when the live slot
is complete and all files agree; exits 1 with a reason otherwise.
"""
import json
import os
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


def main():
    target, files = sys.argv[1], sys.argv[2:]
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
