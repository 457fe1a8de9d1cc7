"""A chain's segments merged into a new base, in a process of its own (flows/snapshots.py).

    python -m keymoment.state.compaction ROOT OUT NAME... [--no-fsync]

Reads the named segments under ROOT (a base, then its parts, oldest first),
merges them (`snapshot_codec.merge`: no state is decoded) and writes segment
OUT (a name the flow reserved), whole or not at all. The flow starts this
when its chain is due for compaction, so the merge (about 1.8 CPU s per
million customers) runs on another core instead of stalling the shard, and
adopts OUT when the process has exited 0. On any error it prints one line
to stderr and exits 2, and OUT does not exist.
"""

from __future__ import annotations

import sys

from . import snapshot_codec as codec
from .segments import SegmentError, SegmentStore


def main(argv: list[str]) -> int:
    fsync = "--no-fsync" not in argv
    args = [a for a in argv if a != "--no-fsync"]
    if len(args) < 3:
        print("usage: python -m keymoment.state.compaction ROOT OUT NAME...", file=sys.stderr)
        return 2
    root, out, names = args[0], args[1], args[2:]
    store = SegmentStore(root, fsync=fsync)
    try:
        store.write_as(out, codec.merge([store.read(name) for name in names]))
    except (SegmentError, codec.CodecError, OSError) as exc:
        print(f"keymoment compaction: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
