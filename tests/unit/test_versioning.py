"""A shard's versions: batch split at a switch, late and repeated switches (flows.versioning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keymoment.flows.metrics import FlowMetrics
from keymoment.flows.stamp import Accepted, Batch
from keymoment.flows.versioning import Versions, split
from keymoment.rollout.versions import RulesVersion, Switch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


def own(*positions: int) -> Accepted:
    """Stand-in events (split reads positions only), one per position, named by it."""
    return Accepted([None] * len(positions), [f"f:{p}" for p in positions], [-1] * len(positions))  # type: ignore[list-item]  # fmt: skip


def test_a_batch_splits_at_its_first_rise_at_or_past_the_switch():
    """Rises at 0h, 1h, 2h with W = 1h: the head ends before the 1h rise, the tail starts at it."""
    batch = Batch([0, 3, 5], [T0, T0 + H, T0 + 2 * H], [0, 2, 3, 6], own(0, 2, 3, 6), T0 + 2 * H,
                  [{"reason": "x"}], 7)  # fmt: skip
    parts = split(batch, T0 + H)
    assert parts is not None
    head, tail = parts
    assert (head.rise_pos, head.positions, head.dead_letters, head.lines) == (
        [0], [0, 2], [{"reason": "x"}], 7
    )  # fmt: skip
    assert (tail.rise_pos, tail.positions, tail.last_at) == ([3, 5], [3, 6], T0 + 2 * H)
    assert head.own.sources == ["f:0", "f:2"] and tail.own.sources == ["f:3", "f:6"]
    assert split(batch, T0 + 3 * H) is None


def test_a_late_switch_is_counted_and_a_repeated_one_ignored():
    """Past the watermark: applied at once and counted; the same version twice: once."""
    v7 = RulesVersion.read(str(EXAMPLE))
    v8 = RulesVersion.parse(
        str(EXAMPLE), EXAMPLE.read_bytes().replace(b"version: 7", b"version: 8"), str(EXAMPLE)
    )
    versions = Versions(v7)
    versions.schedule(Switch(T0, v8), watermark=T0 + H)
    versions.schedule(Switch(T0, v8), watermark=T0 + H)
    assert versions.late == 1 and len(versions.pending) == 1
    versions.pop()
    versions.schedule(Switch(T0, v8), watermark=T0 + H)  # a resumed source re-emitting it
    assert versions.pending == [] and versions.current is v8
    again = Versions.restored(versions.snapshot())
    assert again.current.rules == v8.rules and again.since == T0 and again.late == 1


def test_late_switches_are_a_metric_that_survives_a_restore():
    """`keymoment_rules_switches_late_total` sums every shard's count at scrape time, and reads
    the `Versions` a restore put in place of the old one."""

    def late_total(metrics: FlowMetrics) -> float:
        text = generate_latest(metrics.registry).decode()
        families = text_string_to_metric_families(text)
        family = next(f for f in families if f.name == "keymoment_rules_switches_late")
        return sum(s.value for s in family.samples if s.name.endswith("_total"))

    v7 = RulesVersion.read(str(EXAMPLE))
    v8 = RulesVersion.parse(
        str(EXAMPLE), EXAMPLE.read_bytes().replace(b"version: 7", b"version: 8"), str(EXAMPLE)
    )
    metrics = FlowMetrics()
    early, late = SimpleNamespace(versions=Versions(v7)), SimpleNamespace(versions=Versions(v7))
    metrics.watch_shard(early)
    metrics.watch_shard(late)
    assert late_total(metrics) == 0
    early.versions.schedule(Switch(T0 + H, v8), watermark=T0)  # in time: not late
    late.versions.schedule(Switch(T0, v8), watermark=T0 + H)
    assert late_total(metrics) == 1
    late.versions = Versions.restored(late.versions.snapshot())  # as Shard.restore does
    assert late_total(metrics) == 1
