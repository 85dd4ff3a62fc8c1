#!/usr/bin/env python3
"""write_version.py VERSION SEED FILE...: writes each FILE as a 1-3 MB file
whose first lines say "gen VERSION" and its exact size, so a checker can tell
a complete file of one version from a truncated or mixed one."""
import random
import sys

version, seed, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rng = random.Random(seed)
for path in files:
    size = rng.randint(1_000_000, 3_000_000)
    head = ("gen %s\n" % version).encode()
    line = b"size %d\n" % size
    with open(path, "wb") as out:
        out.write(head + line + b"x" * (size - len(head) - len(line)))
