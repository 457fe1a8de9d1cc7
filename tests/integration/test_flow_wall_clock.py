"""On the wall clock timers fire while input is quiet, and events from the future are rejected."""

from __future__ import annotations

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
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=500)
QUIET = timedelta(seconds=4)


class SteppedClock:
    """The flow's wall clock, moved by the test: one STEP each time the flow has read it.

    Whatever the real speed of the machine, every simulated instant is seen
    by the flow (a tick or a batch read the clock) before time moves on, so
    the test says exactly when the timer must fire.
    """

    def __init__(self) -> None:
        self.now, self.reads = START, 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.now

    def step_if_read(self) -> None:
        if self.reads:
            self.reads = 0
            self.now += STEP


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
    """Two events at START, then nothing (but no end of input) until START + QUIET."""

    def __init__(self, clock: SteppedClock) -> None:
        self.clock = clock
        self.sent = False

    def next_batch(self) -> list:
        if not self.sent:
            self.sent = True
            return [("test:1", app("E1", START)), ("test:2", app("E2", START + timedelta(hours=1)))]
        self.clock.step_if_read()
        if self.clock.now > START + QUIET:
            raise StopIteration
        return []

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + timedelta(milliseconds=5)  # Bytewax polls by real time


class QuietSource(DynamicSource):
    def __init__(self, clock: SteppedClock) -> None:
        self.clock = clock

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Quiet:
        return _Quiet(self.clock)


def test_absence_fires_on_the_wall_clock_tick_while_input_is_quiet(tmp_path: Path) -> None:
    """The abandoned-loan timer fires by the tick at its deadline while input is quiet.

    The event an hour ahead of the (injected) wall clock is a clock_skew dead letter.
    """
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = FlowSettings(
        rules=str(rules),
        sources=["unused"],
        clock="wall",
        tick_seconds=0.01,
        decisions=f"file:{tmp_path / 'd.jsonl'}",
        dead_letters=f"file:{tmp_path / 'dead.jsonl'}",
    )
    clock = SteppedClock()
    run_main(build_flow(settings, sources=[QuietSource(clock)], clock=clock))
    decisions = [orjson.loads(line) for line in (tmp_path / "d.jsonl").read_bytes().splitlines()]
    assert [d["rule_id"] for d in decisions] == ["loan-abandoned"]
    deadline = START + timedelta(seconds=2)
    assert datetime.fromisoformat(decisions[0]["triggered_at"]) == deadline
    # Decided by a tick while input was quiet, not at the end of input. (On a loaded
    # machine the first batch can reach the shard after the clock moved on, so the
    # first look at the timer may come a few steps after its deadline.)
    assert deadline <= datetime.fromisoformat(decisions[0]["decided_at"]) < START + QUIET
    dead = [orjson.loads(line) for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
    assert [(d["reason"], d["source"]) for d in dead] == [("clock_skew", "test:2")]
