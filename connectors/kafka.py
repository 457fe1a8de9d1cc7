"""Kafka topics as a Bytewax source of `(position, value)` and dict records to a topic.

Source: Bytewax's own `KafkaSource` does the consuming (partitions assigned
directly, no consumer group, offsets kept only in Bytewax recovery state).
This module wraps each of its partitions so that:

- items are `(topic:partition:offset, value_bytes)`, the dead-letter
  position and the raw JSON; a message without a value (a tombstone) is
  emitted with an empty payload and becomes a `malformed_json` dead letter;
- consumer errors never crash the flow: a message-level error is emitted as
  an empty payload at its position (a dead letter), a client-level error
  (broker down, ...) is logged and skipped, librdkafka reconnects by itself;
- the snapshot is the next offset after the last message actually emitted.
  (Bytewax's partition moves its offset on error messages too, whose offset
  is negative; ours ignores those.) `start=latest` is fixed as a concrete
  offset (the high watermark) when the partition is first built, so a crash
  before the first message does not skip what arrived meanwhile. (Tansu,
  the test broker, reports the watermark as the last batch's base offset
  + 1: exact only when every produce request carries one message.)

Sink: Bytewax's `KafkaSink` producer; each dict record becomes one message,
value = the record as JSON, key = `record[key]` (default `offer_id`, so a
repeat after a crash carries the same key as the original: a consumer
dedupes by key, and a compacted topic keeps one message per offer;
`customer_id` keeps one customer's offers in order on one partition
instead). At-least-once: after kill -9 the last epoch is produced again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from bytewax.connectors.kafka import (
    KafkaError,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

log = logging.getLogger(__name__)
Item = tuple[str, bytes | None]  # None: the end of a partition (`tail=False` at EOF)
STARTS = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}


class _PositionedPartition(StatefulSourcePartition[Item, int]):
    """Wraps one Bytewax Kafka partition: messages become `(position, value)`."""

    def __init__(
        self, inner: StatefulSourcePartition, resume: int | None, start: int, label: str = ""
    ):
        """`label`: `topic:partition`, sent as `(label, None)` at the end; "" sends nothing."""
        self._inner = inner
        self._offset = start if resume is None else resume
        self._label = label
        self._ended = not label

    def next_batch(self) -> list[Item]:
        """Positioned messages; at the end (`tail=False`, `end_markers`) one
        `(topic:partition, None)`, so the stamp step stops waiting for this partition."""
        try:
            batch = self._inner.next_batch()
        except StopIteration:
            if self._ended:
                raise
            self._ended = True
            return [(self._label, None)]
        out: list[Item] = []
        for msg in batch:
            item = _item(msg)
            if item is None:
                continue
            out.append(item)
            self._offset = max(self._offset, _offset_of(msg) + 1)
        return out

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._inner.close()


def _offset_of(msg: KafkaSourceMessage | KafkaError) -> int:
    source = msg.msg if isinstance(msg, KafkaError) else msg
    return source.offset if source.offset is not None else -1


def _item(msg: KafkaSourceMessage | KafkaError) -> Item | None:
    if isinstance(msg, KafkaError):
        return _error_item(msg)
    return (f"{msg.topic}:{msg.partition}:{msg.offset}", msg.value or b"")


def _error_item(err: KafkaError) -> Item | None:
    """A positioned error is a dead letter; a client error is only logged (never its payload)."""
    msg = err.msg
    if msg.offset is None or msg.offset < 0:
        log.warning("kafka consumer error on %s: %s", msg.topic, err.err.name())
        return None
    log.warning(
        "kafka message error at %s:%s:%s: %s", msg.topic, msg.partition, msg.offset, err.err.name()
    )
    return (f"{msg.topic}:{msg.partition}:{msg.offset}", b"")


class KafkaEventSource(FixedPartitionedSource[Item, int]):
    """All partitions of `topics` from `start` (`earliest`/`latest`); `tail=False` ends at EOF."""

    def __init__(
        self,
        brokers: Sequence[str],
        topics: Sequence[str],
        start: str = "earliest",
        tail: bool = True,
        batch_size: int = 1000,
        config: dict | None = None,
    ):
        if start not in STARTS:
            raise ValueError(f"kafka start must be earliest or latest, not {start!r}")
        if not topics:
            raise ValueError("kafka source needs at least one topic")
        self.start = STARTS[start]
        self.brokers, self.config = list(brokers), dict(config or {})
        self.end_markers = False  # set by the flow when it reads several partitions
        self.inner = KafkaSource(
            list(brokers),
            list(topics),
            tail=tail,
            starting_offset=self.start,
            add_config=config,
            batch_size=batch_size,
            raise_on_errors=False,
        )

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        if resume_state is None and self.start == OFFSET_END:
            resume_state = self._end_offset(for_part)
        inner = self.inner.build_part(step_id, for_part, resume_state)
        idx, topic = for_part.split("-", 1)
        label = f"{topic}:{idx}" if self.end_markers else ""
        return _PositionedPartition(inner, resume_state, self.start, label)

    def _end_offset(self, for_part: str) -> int:
        """`latest` fixed as a number now, so a snapshot taken before any message is exact."""
        idx, topic = for_part.split("-", 1)
        config = {
            "bootstrap.servers": ",".join(self.brokers),
            "group.id": "keymoment-unused",
            "enable.auto.commit": False,
            **self.config,
        }
        consumer = Consumer(config)
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, int(idx)), 10.0)
        finally:
            consumer.close()
        return high


class _RecordPartition(StatelessSinkPartition[dict]):
    def __init__(self, inner: StatelessSinkPartition, key: str):
        self._inner, self._key = inner, key

    def write_batch(self, items: list[dict]) -> None:
        self._inner.write_batch([_message(item, self._key) for item in items])

    def close(self) -> None:
        self._inner.close()


def _message(record: dict, key: str) -> KafkaSinkMessage:
    value = record.get(key)
    return KafkaSinkMessage(
        str(value).encode() if value is not None else None, orjson.dumps(record)
    )


class KafkaRecordSink(DynamicSink[dict]):
    """Dict records as JSON messages on `topic`, keyed by `record[key]`."""

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str,
        key: str = "offer_id",
        config: dict | None = None,
    ):
        self.key = key
        self.inner = KafkaSink(list(brokers), topic, add_config=config)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RecordPartition:
        return _RecordPartition(self.inner.build(step_id, worker_index, worker_count), self.key)
