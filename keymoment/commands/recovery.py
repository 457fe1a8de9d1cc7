"""`keymoment recovery sweep DIR`: list (`--apply`: delete) snapshot segments no record names.

A flow with `--recovery DIR` keeps its incremental snapshots as segment
files under `DIR/segments` and cleans up after itself (flows/snapshots.py).
An execution that crashed twice before its chain was compacted can leave a
directory no running flow will ever clean: the flow cannot tell it from the
directory of another process of its cluster. This command can, from the
recovery databases: a segment no snapshot record Bytewax may resume from
names is never read again. Files younger than `--min-age` are kept (a running
flow names what it wrote only when its epoch commits), so it is safe to run
beside a running flow whose epochs are shorter than that.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from keymoment.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recovery", help="look after a --recovery directory")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sweep = actions.add_parser(
        "sweep", help="list (--apply: delete) snapshot segments no recovery record names"
    )
    sweep.add_argument("directory", metavar="DIR", help="the directory given to run --recovery")
    sweep.add_argument(
        "--min-age",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="keep files younger than this: longer than the flow's epoch (--snapshot-interval)",
    )
    sweep.add_argument("--apply", action="store_true", help="delete what was found")
    sweep.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from keymoment.flows.snapshots import named_segments
    from keymoment.state.segments import SegmentError, unreferenced

    directory = Path(args.directory)
    if args.min_age < 0:
        raise UserError(f"--min-age must be 0 or more, not {args.min_age:g}")
    try:
        named = named_segments(directory)
        segments = directory / "segments"
        found = unreferenced(segments, named, args.min_age, time.time())
    except SegmentError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # no segments directory, or one that cannot be listed
        raise UserError(f"cannot sweep {directory}: {exc.strerror or exc}") from None
    for path in found.directories:
        print(f"unreferenced directory {path.relative_to(directory)}")
    verb = "deleted" if args.apply else "would delete (--apply to delete)"
    print(
        f"{verb} {len(found.files):,} unreferenced segment files ({found.size / 1e6:,.1f} MB), "
        f"{len(found.directories):,} directories with them; kept {found.kept:,} files "
        f"(named by a recovery record, or younger than {args.min_age:g} s)"
    )
    if args.apply:
        found.delete()
    return 0
