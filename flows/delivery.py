"""A sink's delivery stage inside the dataflow: hand offers over, get dead letters back, snapshot.

`keymoment.connectors.delivery.DeliveryStage` does the sending on threads
of its own; this module is the Bytewax side of it. One `stateful_batch`
step per sink, keyed like the offers arrive (the engine's shard keys, so no
offer crosses to another worker), with one `DeliveryLogic` per key:

- `on_batch` submits the offers (never blocks: a full backlog comes back
  as a `channel_backlog_full` dead letter) and emits the dead letters
  settled since the last call, so a failing gateway costs the flow nothing
  but those records;
- a Bytewax timer per key (`notify_at`, only while offers are unsettled)
  lets dead letters out when no new offers arrive;
- the snapshot is the key's unacknowledged offers: on resume after kill -9
  they are submitted again, with the same offer_id and so the same
  Idempotency-Key; the gateway drops the ones it had already accepted.
  Offers acknowledged before the snapshot are not in it and are not sent
  again;
- at the end of input (a replay) `on_eof` waits until every offer of the
  key is settled, so a finished run has delivered or dead-lettered all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from keymoment.connectors.delivery import DeliveryStage, Outbox, submit_all

POLL = timedelta(milliseconds=100)  # how soon a key looks for settled offers without input


class StagedSink(Protocol):
    """A sink that delivers through a `DeliveryStage` (the webhook)."""

    def delivery_stage(self) -> DeliveryStage: ...


class DeliveryLogic(StatefulBatchLogic[dict, dict, list[dict]]):
    """One key's offers in one stage: what it handed over and has not seen settled."""

    def __init__(
        self,
        stage: DeliveryStage,
        resume: list[dict] | None,
        now: Callable[[], datetime],
        check_expiry: bool = True,
    ) -> None:
        self.stage, self.now = stage, now
        self.outbox = Outbox(check_expiry)
        if resume:
            submit_all(stage, resume, self.outbox)  # admitted before the crash: no limit

    def on_batch(self, values: list[dict]) -> tuple[list[dict], bool]:
        for offer in values:
            self.stage.submit(offer, self.outbox)
        return self.outbox.take_dead(), self.RETAIN

    def on_notify(self) -> tuple[list[dict], bool]:
        return self.outbox.take_dead(), self.RETAIN

    def on_eof(self) -> tuple[list[dict], bool]:
        self.outbox.wait()
        return self.outbox.take_dead(), self.RETAIN

    def notify_at(self) -> datetime | None:
        return self.now() + POLL if len(self.outbox) else None

    def snapshot(self) -> list[dict]:
        return self.outbox.unacked()


def _now() -> datetime:
    return datetime.now(UTC)


class _Builder:
    """Builds each key's logic on the process's own stage (the sink makes one per process)."""

    def __init__(self, sink: StagedSink, now: Callable[[], datetime], check_expiry: bool) -> None:
        self.sink, self.now, self.check_expiry = sink, now, check_expiry

    def __call__(self, resume: list[dict] | None) -> DeliveryLogic:
        return DeliveryLogic(self.sink.delivery_stage(), resume, self.now, self.check_expiry)


def deliver(
    step_id: str,
    offers: Stream[tuple[str, dict]],
    sink: StagedSink,
    now: Callable[[], datetime] = _now,
    check_expiry: bool = True,
) -> Stream[dict]:
    """Deliver keyed offers through the sink's stage; the stream of its dead letters.

    `check_expiry=False` for a replay on the event clock: its offers'
    `expires_at` are history by the wall clock, and the policy has already
    held them to their `ttl` on the engine's clock. The step also ends in a
    discarding output, so delivery runs even when the caller drops the dead
    letters (each is logged regardless).
    """
    settled = op.stateful_batch(step_id, offers, _Builder(sink, now, check_expiry))
    dead = op.map(f"{step_id}-dead", settled, _value)
    op.output(f"{step_id}-settled", dead, _Discard())
    return dead


def _value(item: tuple[str, dict]) -> dict:
    return item[1]


class _Ignore(StatelessSinkPartition[dict]):
    def write_batch(self, items: list[dict]) -> None:
        return


class _Discard(DynamicSink[dict]):
    """Terminates the delivery step: Bytewax refuses a flow whose steps lead to no output."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Ignore:
        return _Ignore()
