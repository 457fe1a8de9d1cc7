"""Recorded events through the one driver, without Bytewax: the backtest's loop.

A replay is the live flow on the event clock with one shard: the same
`Stamper` computes the watermark rises of each input batch and the same
`Shard` drives engine and policy over them (docs/semantics.md section 2).
Several input files are merged by `occurred_at`; at the end the watermark
moves to `until` (or the newest `occurred_at` seen) so every timer due by
then fires, and candidates the policy parked are settled. `keymoment
backtest`, `keymoment compare` and the benchmarks all run this.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path

from keymoment.connectors.lines import JsonlReader
from keymoment.policy import ContactPolicy
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile, Event
from keymoment.triggers.ruleset import RuleSet

from .collect import FrozenGc, no_automatic_gc
from .feedback import Logged
from .shard import Shard, ShardOutput
from .stamp import NO_EVENTS, Accepted, Batch, Stamper, accepted_lines
from .versioning import Versions

DEFAULT_BATCH = 1000


class Replay:
    """One pass of recorded input through one `Shard`, in event time.

    `outputs(paths)` yields one `ShardOutput` per input batch and a last one
    for the end of input; `after_until`, `lines` and `fraction()` describe
    the pass for progress lines and summaries.
    """

    def __init__(
        self,
        rules: RuleSet,
        profiles: Mapping[str, CustomerProfile],
        policy: ContactPolicy,
        until: datetime | None = None,
        batch_size: int = DEFAULT_BATCH,
        versions: Versions | None = None,
        decide_from: datetime | None = None,
        warm_sent: Logged | None = None,
    ) -> None:
        """`versions`: the rules as loaded and the switches of a `--rollout` (flows.versioning).

        `decide_from`: a warm-up (`backtest --from`). The events before it build the
        engine's state (dormancy clocks, salary series, windows, milestones), and the
        candidates triggered before it are counted (`warmed_up`), not decided. So the
        policy sees only the candidates from then on, with the rules' state as a run
        started long before would hold it. `warm_sent`: the live decision log's sent
        offers before it (`flows.feedback.sent_in_log`), fed back in the warm-up where
        the live driver fed them back, so follow-ups of them fire after it (`--sent-log`).
        """
        engine = Engine(rules)
        engine.dirty = None  # a replay takes no incremental snapshots
        self.shard = Shard(engine, policy, profiles, versions=versions)
        self.shard.decide_from, self.shard.warm_sent = decide_from, warm_sent
        # A rollout replay may switch to rules that read balances: keep them then.
        self.balances = versions is not None or reads_balances(rules)
        self.stamper = Stamper(
            1, engine.lateness, rules.engine.max_future, until=until, balances=self.balances
        )
        self.until, self.batch_size = until, batch_size
        self._readers: list[tuple[JsonlReader, int]] = []

    @property
    def warmed_up(self) -> int:
        """Candidates triggered before `decide_from`: not decided."""
        return self.shard.warmed_up

    @property
    def fed_back(self) -> int:
        """Warm-up candidates that `warm_sent` says were sent: fed back to the engine."""
        return self.shard.fed_back

    @property
    def after_until(self) -> int:
        """Events skipped because they are later than `until`."""
        return self.stamper.after_until

    def fraction(self) -> float:
        """How far through the input files, for a progress line."""
        if not self._readers:
            return 0.0
        return sum(r.fraction(size) for r, size in self._readers) / len(self._readers)

    def outputs(self, paths: Sequence[str]) -> Iterator[ShardOutput]:
        """Decisions batch by batch; raises OSError (with its filename) for an unreadable file."""
        collect = FrozenGc()  # no latency to protect: no collections at all (flows.collect)
        with no_automatic_gc():
            for batch in self.batches(paths):
                yield self.shard.process(batch)
                collect()
            yield self.shard.finish(self.until)

    def batches(self, paths: Sequence[str]) -> Iterator[Batch]:
        """The stamped input batches alone: `compare` feeds each one to two shards (decode once)."""
        self._readers = [(JsonlReader(Path(p), p), Path(p).stat().st_size) for p in paths]
        try:
            yield from self._single() if len(paths) == 1 else self._merged(self.balances)
        finally:
            for reader, _ in self._readers:
                reader.close()

    def _single(self) -> Iterator[Batch]:
        """One file: the flow's own path, raw batches through `Stamper.__call__`."""
        reader = self._readers[0][0]
        while (lines := reader.read(self.batch_size)) is not None:
            ((_, batch),) = self.stamper([lines])
            yield batch

    def _merged(self, balances: bool) -> Iterator[Batch]:
        """Several files: decoded, merged by occurred_at, then stamped in batches."""
        rejects: list[dict] = []
        counts = [0]  # records read since the last batch
        streams = [_decoded(r, rejects, counts, balances) for r, _ in self._readers]
        merged = heapq.merge(*streams, key=_occurred_at)
        while chunk := list(islice(merged, self.batch_size)):
            dead, rejects[:] = list(rejects), []
            lines, counts[0] = counts[0], 0
            yield self.stamper.stamp(Accepted(*zip(*chunk, strict=True)), dead, lines)[0]
        if rejects or counts[0]:  # rejects after the last accepted event
            yield Batch([], [], [], NO_EVENTS, None, list(rejects), counts[0])


OneEvent = tuple[Event, str, int]  # an accepted event, its source and line


def _occurred_at(item: OneEvent) -> datetime:
    return item[0].occurred_at


def reads_balances(rules: RuleSet) -> bool:
    """Whether any rule reads `balance_after` (only balance milestones do)."""
    return any(rule.trigger == "balance_milestone" for rule in rules.rules)


def _decoded(
    reader: JsonlReader, rejects: list[dict], counts: list[int], balances: bool
) -> Iterator[OneEvent]:
    """One file's accepted events in file order; rejects go to `rejects` as they are read."""
    while (lines := reader.read(DEFAULT_BATCH)) is not None:
        counts[0] += len(lines)
        yield from zip(*accepted_lines(lines, rejects, balances=balances), strict=True)
