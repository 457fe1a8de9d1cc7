"""On the wall clock timers fire while input is quiet, and events from the future are rejected."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import run_main

from keymoment.flows.dataflow import build_flow
from keymoment.flows.settings import FlowSettings

RULES = """
version: 1
timezone: UTC
rules:
  - {rule_id: loan-abandoned, trigger: absence, campaign: c, within: 2s,
     start: {type: app, action: apply_start, product: loan},
     cancel: {type: app, action: apply_submit, product: loan}}
campaigns:
  - {campaign_id: c, offer_code: X, channels: [app_push]}
"""
QUIET = 4.0


def app(event_id: str, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "type": "app",
            "event_id": event_id,
            "customer_id": "C1",
            "action": "apply_start",
            "product": "loan",
            "occurred_at": at.isoformat(),
        }
    )


class _Quiet(StatelessSourcePartition):
    """Two events at once, then nothing (but no end of input) for QUIET seconds."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sent = False

    def next_batch(self) -> list:
        if not self.sent:
            self.sent = True
            now = datetime.now(UTC)
            return [("test:1", app("E1", now)), ("test:2", app("E2", now + timedelta(hours=1)))]
        if time.monotonic() - self.started > QUIET:
            raise StopIteration
        return []

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + timedelta(milliseconds=50)


class QuietSource(DynamicSource):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Quiet:
        return _Quiet()


def test_absence_fires_on_the_wall_clock_tick_while_input_is_quiet(tmp_path: Path) -> None:
    """The abandoned-loan timer fires by the tick while input is quiet; future event: clock_skew."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = FlowSettings(
        rules=str(rules),
        sources=["unused"],
        clock="wall",
        tick_seconds=0.2,
        decisions=f"file:{tmp_path / 'd.jsonl'}",
        dead_letters=f"file:{tmp_path / 'dead.jsonl'}",
    )
    started = datetime.now(UTC)
    run_main(build_flow(settings, sources=[QuietSource()]))
    decisions = [orjson.loads(line) for line in (tmp_path / "d.jsonl").read_bytes().splitlines()]
    assert [d["rule_id"] for d in decisions] == ["loan-abandoned"]
    triggered = datetime.fromisoformat(decisions[0]["triggered_at"])
    decided = datetime.fromisoformat(decisions[0]["decided_at"])
    assert triggered <= decided < started + timedelta(seconds=QUIET - 0.5), (
        "fired at end of input, not by the tick"
    )
    dead = [orjson.loads(line) for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
    assert [(d["reason"], d["source"]) for d in dead] == [("clock_skew", "test:2")]
