"""`keymoment run` as an operator meets it: a start line, a summary, clean stops, no silent runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keymoment.connectors.generator import Generator
from tests.support.cli import keymoment

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "examples" / "rules.yaml"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_run_cleanly_with_a_summary(tmp_path: Path, sig: int, code: int) -> None:
    """Ctrl-C or SIGTERM mid-run: exit 130/143, a summary, no panic and no traceback."""
    decisions = tmp_path / "decisions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "keymoment", "run", "--rules", RULES,
         "--source", "generator:?customers=500&rate=400&seed=3",
         "--decisions", f"file:{decisions}", "--sink", f"file:{tmp_path / 'offers.jsonl'}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        start = proc.stderr.readline()
        assert start.startswith("keymoment run: rules version 7 (8 rules)"), start
        deadline = time.monotonic() + 120
        while not (decisions.exists() and decisions.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for the flow to decide something, not timing it
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == code
        rest = proc.stderr.read()
    finally:
        proc.kill()
    assert f"stopped by {signal.Signals(sig).name}" in rest and "candidates:" in rest
    assert "Traceback" not in rest and "panicked" not in rest and "bytewax" not in rest.lower()


def _old_events(tmp_path: Path) -> Path:
    gen = Generator(seed=4, customers=300, start_at=datetime(2024, 1, 1, tzinfo=UTC), days=60)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(b + b"\n" for b in gen.iter_bytes()))
    return path


def test_recorded_input_on_the_wall_clock_says_every_candidate_expires(tmp_path: Path) -> None:
    """Old input with the default --clock wall: the summary says why nothing was sent."""
    events = _old_events(tmp_path)
    result = keymoment("run", "--rules", RULES, "--source", f"file:{events}")
    assert result.returncode == 0, result.stderr
    assert "input ended after" in result.stderr
    assert "expired (ttl) on the wall clock" in result.stderr and "--clock event" in result.stderr
    assert "dead letters: 0" in result.stderr  # counted although --dead-letters is not given


@pytest.mark.parametrize(
    "args,says",
    [
        (["--workers", "0"], "--workers must be 1 or more"),
        (["--shards", "0"], "--shards must be 1 or more"),
        (["--sink", "email=file:x.jsonl"], "no campaign sends on email"),
    ],
)
def test_options_that_would_do_nothing_are_errors(tmp_path: Path, args: list, says: str) -> None:
    """`--workers 0`, a sink for a channel no campaign uses: one line, exit 2."""
    result = keymoment("run", "--rules", RULES, "--source", f"file:{_old_events(tmp_path)}", *args)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert says in result.stderr
