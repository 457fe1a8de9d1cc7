"""`keymoment recovery sweep DIR`: the segments no recovery record names go, the rest stays.

A real `keymoment run --recovery` writes the chains; orphans are planted
beside them as a crashed execution leaves them (a directory of its own
token, a stale part inside a live directory); after `--apply` the flow
still resumes from the same directory, so nothing a record names was lost.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from keymoment.connectors.generator import Generator
from tests.support.cli import keymoment

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
HOUR = 3600


def aged(path: Path, seconds: float) -> Path:
    """Set `path`'s mtime `seconds` into the past (a directory: it and its files)."""
    then = time.time() - seconds
    for p in [*path.iterdir(), path] if path.is_dir() else [path]:
        os.utime(p, (then, then))
    return path


def test_sweep_deletes_only_what_no_record_names(tmp_path: Path) -> None:
    gen = Generator(seed=52, customers=120, days=120, noise=0.01)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    decisions, recovery = tmp_path / "decisions.jsonl", tmp_path / "state"
    run = (
        *("run", "--rules", RULES, "--source", f"file:{events}", "--clock", "event"),
        *("--until", gen.until_at.isoformat(), "--decisions", f"file:{decisions}"),
        *("--recovery", recovery, "--snapshot-interval", "1", "--workers", "2"),
    )
    first = keymoment(*run)
    assert first.returncode == 0, first.stderr
    segments = recovery / "segments"
    live = sorted(segments.iterdir())
    named = {f"{d.name}/{f.name}" for d in live for f in d.iterdir()}
    assert len(live) >= 2
    orphan = aged(shutil.copytree(live[0], segments / "18f0000000000001-1-0000aa"), 2 * HOUR)
    young = shutil.copytree(live[1], segments / "18f0000000000002-1-0000bb")
    stale = live[0] / "99999999.part"  # a part of an epoch Bytewax never committed
    stale.write_bytes(b"x")
    for d in live:
        aged(d, 2 * HOUR)  # old enough: only being named keeps them

    dry = keymoment("recovery", "sweep", recovery)
    assert dry.returncode == 0, dry.stderr
    assert "unreferenced directory segments/18f0000000000001-1-0000aa" in dry.stdout
    assert "would delete" in dry.stdout and orphan.exists() and stale.exists()

    done = keymoment("recovery", "sweep", recovery, "--apply")
    assert done.returncode == 0, done.stderr
    assert not orphan.exists() and not stale.exists()
    assert young.exists(), "younger than --min-age: a running flow may name it at its next epoch"
    assert {f"{d.name}/{f.name}" for d in live for f in d.iterdir()} == named

    written = decisions.read_bytes()
    again = keymoment(*run)  # resumes from the swept directory: every named segment is there
    assert again.returncode == 0, again.stderr
    assert decisions.read_bytes() == written


def test_sweep_mistakes_are_one_line(tmp_path: Path) -> None:
    for args, says in [
        ((tmp_path,), "is not a recovery directory"),
        ((tmp_path, "--min-age", "-1"), "--min-age must be 0 or more"),
    ]:
        out = keymoment("recovery", "sweep", *args)
        assert out.returncode == 2 and says in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
