"""The garbage-collection schedule is one per process, whatever the number of shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from keymoment.flows.collect import FROZEN_GC, YOUNG_GC
from keymoment.flows.connect import versions_from
from keymoment.flows.dataflow import ShardBuilder, wall_clock
from keymoment.flows.settings import FlowSettings

RULES = Path(__file__).resolve().parents[2] / "bench" / "four_rules.yaml"


@pytest.mark.parametrize(("clock", "shared"), [("event", FROZEN_GC), ("wall", YOUNG_GC)])
def test_every_shard_of_a_process_uses_the_same_collector(clock: str, shared: object) -> None:
    """A collector each made a process of 8 shards do 8 full collections per period, not 1."""
    settings = FlowSettings(rules=str(RULES), sources=["x"], clock=clock)  # type: ignore[arg-type]
    builder = ShardBuilder(
        settings, versions_from(settings), {}, wall_clock if clock == "wall" else None
    )
    logics = [builder(None) for _ in range(3)]
    assert all(logic.collect is shared for logic in logics)
