#!/usr/bin/env python3
"""Generate a large, deep source tree for bench/vcheck.sh, quickly.

Layout, modelled on usr/lib/modules:
    DEST/<version>/kernel/<category>/<a>/<b>/<name>.ko
with about FILES_PER_DIR empty files in each leaf directory, 10 categories x 5 x 5
leaf directories per version, as many versions as needed for --files. Files are
created empty (stat cost does not depend on size) with one openat + close
each, relative to the directory fd, split across worker processes.

usage: gen_tree.py DEST --files N [--per-dir 1000] [--jobs 2]
"""
import argparse
import os
import sys
from multiprocessing import Pool

CATEGORIES = ["arch", "crypto", "drivers", "fs", "lib", "mm", "net", "sound", "security", "virt"]
FANOUT_A = 5
FANOUT_B = 5
LEAVES_PER_VERSION = len(CATEGORIES) * FANOUT_A * FANOUT_B
STEMS = ["snd-hda-codec", "nf_conntrack", "usb-storage", "iwlwifi", "xfs", "btrfs", "dm-crypt", "ahci", "e1000e",
         "virtio_blk", "nvme-core", "cfg80211", "hid-generic", "ext4", "vfat", "mac80211", "ip6_tables", "raid456"]


def leaf_dirs(count):
    """Relative paths of `count` leaf directories, in creation order."""
    out = []
    version = 0
    while len(out) < count:
        for cat in CATEGORIES:
            for a in range(FANOUT_A):
                for b in range(FANOUT_B):
                    if len(out) == count:
                        return out
                    out.append(f"6.1.0-{version + 1}-amd64/kernel/{cat}/{cat[:3]}{a}/sub{b}")
        version += 1
    return out


def fill(job):
    dest, leaves = job
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    made = 0
    for rel, files in leaves:
        path = os.path.join(dest, rel)
        os.makedirs(path, exist_ok=True)
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(files):
                os.close(os.open(f"{STEMS[i % len(STEMS)]}-{i:05d}.ko", flags, 0o644, dir_fd=dfd))
            made += files
        finally:
            os.close(dfd)
    return made


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest")
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--per-dir", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.files < 1 or args.per_dir < 1:
        parser.error("--files and --per-dir must be positive")

    nleaves = -(-args.files // args.per_dir)
    leaves = leaf_dirs(nleaves)
    base, extra = divmod(args.files, nleaves)
    counts = [base + (1 if i < extra else 0) for i in range(nleaves)]
    work = list(zip(leaves, counts))
    # Create the directory skeleton first (serially, so workers never race on
    # a parent), then fill leaves round-robin across workers.
    for rel in leaves:
        os.makedirs(os.path.join(args.dest, rel), exist_ok=True)
    jobs = max(1, min(args.jobs, len(work)))
    chunks = [(args.dest, work[i::jobs]) for i in range(jobs)]
    if jobs == 1:
        made = fill(chunks[0])
    else:
        with Pool(jobs) as pool:
            made = sum(pool.map(fill, chunks))
    print(f"gen_tree: {made} files in {len(leaves)} leaf directories under {args.dest}", file=sys.stderr)
    return 0 if made == args.files else 1


if __name__ == "__main__":
    sys.exit(main())
