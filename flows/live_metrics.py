"""The metrics read when Prometheus asks, not counted on the data path (flows/metrics.py).

The watermark's lag behind the wall clock, the candidates parked for the
cap store, the rules switches that reached a shard late, and each sink's
delivery-stage counts cost nothing between
scrapes: `Live` reads them from the objects `FlowMetrics` watches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .metrics import FlowMetrics


class Live(Collector):
    """Values read at scrape time: watermark and lag, parked candidates, late switches, sinks."""

    def __init__(self, metrics: FlowMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        p = self.m.process
        yield from self._watermark(p)
        parked = GaugeMetricFamily(
            "keymoment_candidates_parked",
            "Candidates waiting for the cap store",
            labels=["process"],
        )
        parked.add_metric([p], sum(getattr(x, "pending", 0) for x in self.m.policies))
        yield parked
        late = CounterMetricFamily(
            "keymoment_rules_switches_late",
            "Rules switches that reached a shard after its watermark passed their time W "
            "(applied at once; raise --reload-lead)",
            labels=["process"],
        )
        late.add_metric([p], sum(_late(shard) for shard in self.m.shards))
        yield late
        yield from self._sinks(p)

    def _watermark(self, p: str) -> Iterator[Metric]:
        at = self.m.watermark_at
        if at is None:
            return
        mark = GaugeMetricFamily(
            "keymoment_watermark_seconds", "The engine watermark (Unix time)", labels=["process"]
        )
        mark.add_metric([p], at)
        lag = GaugeMetricFamily(
            "keymoment_watermark_lag_seconds",
            "How far the watermark is behind the wall clock",
            labels=["process"],
        )
        lag.add_metric([p], self.m.clock() - at)
        yield mark
        yield lag

    def _sinks(self, p: str) -> Iterator[Metric]:
        names = {"delivered": "offers_delivered", "retried": "offers_retried"}
        families = {
            key: CounterMetricFamily(
                f"keymoment_{name}", f"Offers {key} by sink", labels=["process", "sink"]
            )
            for key, name in {**names, "failed": "offers_failed"}.items()
        }
        backlog = GaugeMetricFamily(
            "keymoment_delivery_backlog", "Offers waiting for delivery", labels=["process", "sink"]
        )
        for sink, obj in sorted(self.m.sinks.items()):
            counts = sink_counts(obj) if obj is not None else {"delivered": self.m.handed[sink]}
            for key, family in families.items():
                family.add_metric([p, sink], counts.get(key, 0))
            backlog.add_metric([p, sink], counts.get("backlog", 0))
        yield from families.values()
        yield backlog


def _late(shard: Any) -> int:
    """A shard's late switches; its `versions` is replaced on restore, so read each time."""
    versions = getattr(shard, "versions", None)
    return getattr(versions, "late", 0) if versions is not None else 0


def stage_of(sink: Any) -> Any:
    """The sink's delivery stage (connectors/delivery.py), if it has one."""
    if hasattr(sink, "delivery_stage"):
        return sink.delivery_stage()
    return getattr(sink, "stage", None)


def sink_counts(sink: Any) -> dict[str, int]:
    """delivered / retried / failed / backlog from a sink's delivery stage.

    The stage's `counts` hold delivered, retries and one count per failure reason.
    """
    stage = stage_of(sink)
    counts = getattr(stage, "counts", None) or {}
    failed = sum(n for reason, n in counts.items() if reason not in ("delivered", "retries"))
    return {
        "delivered": counts.get("delivered", 0),
        "retried": counts.get("retries", 0),
        "failed": failed,
        "backlog": int(getattr(stage, "backlog", 0)),
    }
