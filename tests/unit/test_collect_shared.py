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


@pytest.mark.parametrize(
    ("recovery", "snapshot_dir", "tracked"),
    [(False, None, False), (True, None, False), (True, "d", True)],
)
def test_only_an_incremental_chain_tracks_changed_customers(
    recovery: bool, snapshot_dir: str | None, tracked: bool, tmp_path: Path
) -> None:
    """Without a chain to empty it, `Engine.dirty` would grow to every customer ever seen."""
    settings = FlowSettings(
        rules=str(RULES),
        sources=["x"],
        clock="event",
        recovery=recovery,
        snapshot_dir=str(tmp_path / snapshot_dir) if snapshot_dir else None,
    )
    logic = ShardBuilder(settings, versions_from(settings), {}, None)(None)
    assert (logic.shard.engine.dirty is not None) is tracked
