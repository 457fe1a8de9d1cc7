"""Prometheus metrics of one flow process, counted per batch from what the shards return.

One `FlowMetrics` per process, with its own `CollectorRegistry` (no global
state, so tests and several flows in one process do not collide). Every
series carries a `process` label, the process's index in its cluster, so
the metrics of a cluster's processes can be summed or told apart. Labels are
rules, outcomes, channels, sinks, sources and reasons: all bounded by the
rules file and the command line, never a customer, account or amount.

Counting happens once per shard call (one input batch, one tick), over the
lists the shard returns, plus a few hooks: the cap store's reserve calls,
snapshots, sinks. What can be read at scrape time (the watermark's lag, the
candidates parked for the cap store, rules switches that reached a shard
late, a sink's own delivery counters) is
read then, by `_Live`, so the data path pays nothing for it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from keymoment.state import CapStoreUnavailable

from .live_metrics import Live, stage_of
from .shard import ShardOutput
from .stamp import Batch

disable_created_metrics()  # no `_created` twin of every counter: scrapes stay half the size

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


_event_type = attrgetter("type")


class FlowMetrics:
    """The process's metrics (see the module docstring); `registry` is what `/metrics` shows."""

    def __init__(self, process: int = 0, clock: Callable[[], float] = time.time):
        self.registry = CollectorRegistry()
        self.process, self.clock = str(process), clock
        self.watermark_at: float | None = None
        self.calls = 0  # shard calls counted: the engine is running once this is above 0
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.policies: list[Any] = []
        self.shards: list[Any] = []
        self.sinks: dict[str, Any] = {}
        self.handed: Tally[str] = Tally()  # offers handed to sinks that keep no counts
        self.routes: dict[str, str] | None = None
        self.default_sink: str | None = None
        self._build()
        self.registry.register(Live(self))

    def _build(self) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["process", *labels], registry=self.registry)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, ["process"], buckets=buckets, registry=self.registry)

        self.records = counter(
            "keymoment_input_records", "Input records read, accepted or not, by source", "source"
        )
        self.events = counter("keymoment_events", "Accepted input events by type", "type")
        self.dead = counter("keymoment_dead_letters", "Records sent to dead letters", "reason")
        self.candidates = counter(
            "keymoment_candidates", "Candidates decided by the contact policy, by rule", "rule"
        )
        self.decisions = counter(
            "keymoment_decisions", "Decisions by rule, outcome and channel", "rule", "outcome",
            "channel",
        )  # fmt: skip
        self.store_errors = counter(
            "keymoment_cap_store_errors", "Cap-store calls that failed (store unavailable)"
        )
        self.reload_failures = counter(
            "keymoment_rules_reload_failures", "Rules reloads refused (the last good rules stay)"
        )
        self.latency = histogram(
            "keymoment_decision_latency_seconds",
            "From the candidate's triggered_at to its decision (wall clock runs only)",
            LATENCY_BUCKETS,
        )
        self.store_latency = histogram(
            "keymoment_cap_store_latency_seconds", "One cap-store reserve call", STORE_BUCKETS
        )
        self.snapshot_seconds = histogram(
            "keymoment_snapshot_duration_seconds", "Building one shard's snapshot", SNAPSHOT_BUCKETS
        )
        self.snapshot_bytes = Gauge(
            "keymoment_snapshot_size_bytes",
            "Size of the last shard snapshot",
            ["process"],
            registry=self.registry,
        )
        self.rules = Info(
            "keymoment_rules", "The rules file in force", ["process"], registry=self.registry
        )

    # -- per batch ----------------------------------------------------------------------------

    def batch(self, batches: Iterable[Batch]) -> None:
        """Shard input: its own accepted events by type (0.3 us per event, measured).

        Records by source are counted where they are read (`read`, per source
        batch): telling each event's source here would double the cost.
        """
        tally: Tally[str] = Tally()
        for batch in batches:
            tally.update(map(_event_type, batch.own.events))
        for kind, n in tally.items():
            self._inc(self.events, (kind,), n)

    def _inc(self, metric: Counter, labels: tuple[str, ...], n: float) -> None:
        """`metric.labels(process, *labels).inc(n)`, the child looked up in a plain dict.

        prometheus_client's `labels()` validates and locks on every call: about
        as costly as all the counting it serves, at a few dozen calls per batch.
        """
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.process, *labels)
        child.inc(n)

    def reader(self, source: str) -> Callable[[int], None]:
        """What a source partition calls with the size of each batch it read."""
        return self.records.labels(self.process, source).inc

    def output(self, out: ShardOutput, now: datetime | None = None) -> None:
        """One shard call's decisions (and their latency), offers per sink and dead letters."""
        p = self.process
        self.calls += 1
        if out.decisions:
            tally = Tally(
                (d.candidate.rule_id, d.outcome, d.channel or "none") for d in out.decisions
            )
            rules: Tally[str] = Tally()
            for labels, n in tally.items():
                self._inc(self.decisions, labels, n)
                rules[labels[0]] += n
            for rule, n in rules.items():
                self._inc(self.candidates, (rule,), n)
            if now is not None:
                observe = self.latency.labels(p).observe
                for d in out.decisions:
                    observe(max((now - d.candidate.triggered_at).total_seconds(), 0.0))
        if out.offers and self.routes is not None:
            self._hand(out.offers)
        if out.dead_letters:
            for reason, n in Tally(d["reason"] for d in out.dead_letters).items():
                self._inc(self.dead, (reason,), n)

    def _hand(self, offers: list[dict]) -> None:
        """Offers to sinks that keep no counts of their own: counted as handed to the sink."""
        routes, default = self.routes or {}, self.default_sink
        for channel, n in Tally(o["channel"] for o in offers).items():
            sink = routes.get(channel, default)
            if sink is not None and self.sinks.get(sink) is None:
                self.handed[sink] += n

    def watermark(self, at: datetime | None) -> None:
        """The newest watermark of this process's shards (the lag is computed at scrape)."""
        if at is not None:
            ts = at.timestamp()
            if self.watermark_at is None or ts > self.watermark_at:
                self.watermark_at = ts

    def snapshot(self, seconds: float, size: int) -> None:
        self.snapshot_seconds.labels(self.process).observe(seconds)
        self.snapshot_bytes.labels(self.process).set(size)

    def route(self, sinks: dict[str, Any], default: str | None) -> None:
        """Which sink takes which channel (`default`: every other channel), and the sinks.

        A sink with a delivery stage (the webhook) counts for itself; the
        others count what the flow hands them.
        """
        self.routes = {name: name for name in sinks if name != default}
        self.default_sink = default
        for name, sink in sinks.items():
            self.sinks[name] = sink if stage_of(sink) is not None else None

    # -- registration -------------------------------------------------------------------------

    def rules_loaded(self, version: int | str) -> None:
        self.rules.labels(self.process).info({"version": str(version)})

    def rules_reload(self, audit: dict) -> None:
        """One reload attempt's audit record (keymoment.rollout.audit): refused, or applied."""
        if audit.get("result") == "rejected":
            self.reload_failures.labels(self.process).inc()
        elif audit.get("result") == "applied" and audit.get("to_version") is not None:
            self.rules_loaded(audit["to_version"])

    def watch_policy(self, policy: Any) -> None:
        """Read `pending` (candidates parked for the cap store) from it at every scrape."""
        self.policies.append(policy)

    def watch_shard(self, shard: Any) -> None:
        """Read its rules switches that came late (`Versions.late`) at every scrape."""
        self.shards.append(shard)

    def time_store(self, store: Any) -> Any:
        """Time the store's reserve calls and count its failures, on the instance itself.

        Not a proxy: the policy tells a memory store by its class (for snapshots).
        `reserve` and `reserve_many` may call each other: only the outer call counts.
        """
        depth = threading.local()
        for name in ("reserve", "reserve_many"):
            inner = getattr(store, name, None)
            if inner is not None:
                setattr(store, name, self._timed(inner, depth))
        return store

    def _timed(self, call: Callable[..., Any], depth: threading.local) -> Callable[..., Any]:
        observe = self.store_latency.labels(self.process).observe
        errors = self.store_errors.labels(self.process)

        def timed(*args: Any) -> Any:
            if getattr(depth, "inside", False):
                return call(*args)
            depth.inside, started = True, time.perf_counter()
            try:
                return call(*args)
            except CapStoreUnavailable:
                errors.inc()
                raise
            finally:
                depth.inside = False
                observe(time.perf_counter() - started)

        return timed
