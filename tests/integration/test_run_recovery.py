"""`keymoment run --recovery DIR` initialises DIR; a restart resumes instead of starting over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from keymoment.connectors.generator import Generator

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


def keymoment(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keymoment", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_with_recovery_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A second run on the same recovery directory resumes at the end: nothing lost or repeated."""
    gen = Generator(seed=51, customers=150, days=150, noise=0.01)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    decisions, recovery = tmp_path / "decisions.jsonl", tmp_path / "state"
    args = (
        "run",
        "--rules",
        RULES,
        "--source",
        f"file:{events}",
        "--clock",
        "event",
        "--until",
        gen.until_at.isoformat(),
        "--decisions",
        f"file:{decisions}",
        "--recovery",
        recovery,
        "--snapshot-interval",
        "1",
        "--workers",
        "2",
    )
    first = keymoment(*args)
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in recovery.iterdir())
    assert names == ["part-0.sqlite3", "part-1.sqlite3", "segments"]  # segments: flows/snapshots.py
    written = decisions.read_bytes()
    ids = [orjson.loads(line)["offer_id"] for line in written.splitlines()]
    assert len(ids) > 50 and len(ids) == len(set(ids))
    second = keymoment(*args)
    assert second.returncode == 0, second.stderr
    assert decisions.read_bytes() == written
