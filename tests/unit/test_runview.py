"""`keymoment run`'s progress line and summary: the watermark comes from the shards' outputs,
with or without `--metrics`."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from keymoment.commands.runview import RunView
from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.flows.shard import Shard, ShardOutput
from keymoment.flows.stamp import Stamper
from keymoment.policy import FirstChannelPolicy
from keymoment.triggers.engine import Engine


def test_the_view_keeps_the_newest_watermark_of_every_shard() -> None:
    view = RunView(wall_clock=False, out=io.StringIO())
    assert "watermark" not in view.progress_line() and "watermark" not in view.summary(None)
    for day in (3, 5, 4):  # shards report out of order: the newest stays
        out = ShardOutput([], None, [], 0, 0)
        out.watermark = datetime(2026, 3, day, 12, tzinfo=UTC)
        view.observe(out)
    view.observe(ShardOutput([], None, [], 0, 0))  # a call that moved no time
    assert "watermark 2026-03-05 12:00:00" in view.progress_line()
    assert "  watermark: 2026-03-05 12:00:00 UTC" in view.summary(None).splitlines()


def test_a_shard_call_reports_the_engine_watermark() -> None:
    """process and finish hand the engine's watermark to the view (a replay's shard)."""
    rules = load_rules("examples/rules.yaml")
    shard = Shard(Engine(rules), FirstChannelPolicy(rules), {}, None)
    stamper = Stamper(1, rules.engine.allowed_lateness, rules.engine.max_future)
    gen = Generator(seed=1, customers=50, days=30, activity=0.5)
    raw = [(f"f:{i}", payload) for i, payload in enumerate(gen.iter_bytes(limit=50))]
    ((_, batch),) = stamper(raw)
    out = shard.process(batch)
    assert out.watermark is not None and out.watermark == shard.engine.watermark
    until = datetime(2026, 12, 1, tzinfo=UTC)
    assert shard.finish(until).watermark == until
