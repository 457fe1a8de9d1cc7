"""Counters over the flow's results, for `keymoment demo`'s live view and summary.

Fed by an `inspect` step with one result per shard call, so it costs a few
dictionary updates per batch, not per event. Counts only: never amounts,
accounts or counterparties.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from .shard import ShardOutput


class FlowStats:
    """Running totals, safe to read from another thread while the flow writes them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.lines = 0
        self.candidates: Counter[str] = Counter()  # by rule
        self.outcomes: Counter[str] = Counter()
        self.offers: Counter[tuple[str, str]] = Counter()  # (rule, channel)
        self.dead: Counter[str] = Counter()  # by reason

    def __call__(self, result: ShardOutput) -> None:
        with self.lock:
            self.lines += result.lines
            for d in result.decisions:
                self.candidates[d.candidate.rule_id] += 1
                self.outcomes[d.outcome] += 1
            for o in result.offers:
                self.offers[(o["rule_id"], o["channel"])] += 1
            for letter in result.dead_letters:
                self.dead[letter["reason"]] += 1

    def copy(self) -> dict[str, Any]:
        with self.lock:
            return {
                "elapsed": time.monotonic() - self.started,
                "lines": self.lines,
                "candidates": Counter(self.candidates),
                "outcomes": Counter(self.outcomes),
                "offers": Counter(self.offers),
                "dead": Counter(self.dead),
            }


class _StoppablePartition(StatefulSourcePartition):
    def __init__(self, inner: StatefulSourcePartition, stop: threading.Event) -> None:
        self.inner, self.stop = inner, stop

    def next_batch(self) -> Iterable[Any]:
        if self.stop.is_set():
            raise StopIteration
        return self.inner.next_batch()

    def next_awake(self):  # noqa: ANN201
        return None if self.stop.is_set() else self.inner.next_awake()  # stop: no waiting

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class StoppableSource(FixedPartitionedSource):
    """Wraps a source so another thread can end the input (the demo's Ctrl-C and --duration)."""

    def __init__(self, inner: FixedPartitionedSource, stop: threading.Event) -> None:
        self.inner, self.stop = inner, stop

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _StoppablePartition:
        return _StoppablePartition(
            self.inner.build_part(step_id, for_part, resume_state), self.stop
        )
