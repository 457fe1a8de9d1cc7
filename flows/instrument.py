"""How a flow process serves its metrics and health: the listener, the readiness checks.

`Observability.start(...)` is what `keymoment run --metrics` and `keymoment
demo` call before the dataflow starts. Readiness (`/readyz`) holds when:
- rules: the rules file is loaded (its version is in `keymoment_rules_info`);
- sources: every source partition this process reads was opened (a Kafka
  or Redis source connects there), and none says it lost its server since
  (`lost()`: a Redis stream partition retrying a failed read, a Kafka
  partition whose consumer reports no broker up);
- engine: a shard has processed its first batch or tick;
- cap_store: the cap store answers (`CapStore.check()`, at most once a second).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition

from keymoment.config import RulesFile
from keymoment.connectors.lines import records_in

from .health import Health, Listener
from .metrics import FlowMetrics


class Probe:
    """Flags the flow raises as it comes up, read by the readiness checks."""

    def __init__(self) -> None:
        self.opening = 0  # source partitions being opened now
        self.failed: str | None = None
        self.lost: dict[str, Callable[[], str | None]] = {}  # open partitions: their `lost`

    def sources(self) -> str | None:
        """The readiness check's answer: a partition that failed to open, is opening, or
        says it lost its server (`lost()`, the Redis and Kafka partitions')."""
        if self.failed or self.opening:
            return self.failed or "opening"
        found = [f"{name}: {why}" for name, check in list(self.lost.items()) if (why := check())]
        return "; ".join(found) or None


class _CountedPartition(StatefulSourcePartition):
    """Counts each batch's records for `keymoment_input_records_total{source}` (`records_in`)."""

    def __init__(
        self,
        inner: StatefulSourcePartition,
        count: Callable[[int], None],
        forget: Callable[[], object],
    ) -> None:
        self.inner, self.count, self.forget = inner, count, forget

    def next_batch(self) -> Iterable[Any]:
        items = self.inner.next_batch()  # a list from every source: counting does not consume it
        if records := records_in(items):
            self.count(records)
        return items

    def next_awake(self):  # noqa: ANN201 - datetime | None, as the inner partition says
        return self.inner.next_awake()

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.forget()
        self.inner.close()


def _no_loss() -> None:
    return None


def _lost_of(part: Any) -> Callable[[], str | None]:
    """The partition's `lost`, under the wrappers (`.inner`) around it; else never lost."""
    while not hasattr(part, "lost") and hasattr(part, "inner"):
        part = part.inner
    return getattr(part, "lost", _no_loss)


class ProbedSource(FixedPartitionedSource):
    """A source whose partitions say when they are opened, and count what they read.

    The partition's name is the metrics' `source` label: a file's path, a
    Kafka `partition-topic`, a Redis stream, the generator's part.
    """

    def __init__(self, inner: FixedPartitionedSource, probe: Probe, metrics: FlowMetrics) -> None:
        self.inner, self.probe, self.metrics = inner, probe, metrics

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition:
        self.probe.opening += 1
        try:
            part = self.inner.build_part(step_id, for_part, resume_state)
        except Exception as exc:
            self.probe.failed = f"{for_part}: {type(exc).__name__}"
            raise
        finally:
            self.probe.opening -= 1
        self.probe.lost[for_part] = _lost_of(part)
        forget = partial(self.probe.lost.pop, for_part, None)
        return _CountedPartition(part, self.metrics.reader(for_part), forget)


def probed(sources: list[Source], obs: Observability) -> list[Source]:
    return [
        ProbedSource(s, obs.probe, obs.metrics) if isinstance(s, FixedPartitionedSource) else s
        for s in sources
    ]


class Throttled:
    """A check that runs at most every `every` seconds and repeats its last answer meanwhile."""

    def __init__(self, check: Callable[[], None], every: float = 1.0) -> None:
        self.check, self.every = check, every
        self.at = float("-inf")
        self.last: str | None = "not checked yet"
        self.lock = threading.Lock()

    def __call__(self) -> str | None:
        with self.lock:
            if time.monotonic() - self.at >= self.every:
                self.at = time.monotonic()
                try:
                    self.check()
                    self.last = None
                except Exception as exc:
                    self.last = f"unreachable ({type(exc).__name__})"
            return self.last


class Observability:
    """The metrics, health checks and listener of one process (see the module docstring)."""

    def __init__(self, process: int = 0) -> None:
        self.metrics = FlowMetrics(process)
        self.probe = Probe()
        self.health = Health()
        self.listener: Listener | None = None

    def start(self, host: str, port: int, rules: RulesFile) -> Observability:
        self.metrics.rules_loaded(rules.version)
        p = self.probe
        self.health.add("rules", lambda: None)  # loaded before the listener starts
        self.health.add("sources", p.sources)
        m = self.metrics
        self.health.add("engine", lambda: None if m.calls else "waiting for the first batch")
        self.health.add("cap_store", Throttled(self._check_store))
        self.listener = Listener(self.metrics.registry, self.health, host, port)
        return self

    def _check_store(self) -> None:
        for policy in self.metrics.policies[:1]:  # every shard's store is the same server
            policy.store.check()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
