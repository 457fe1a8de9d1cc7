"""Kafka topics as a Bytewax source of message batches, and dict records to a topic.

Source: Bytewax's own `KafkaSource` lists the partitions; each partition is
read by a librdkafka consumer of its own (assigned directly, no consumer
group, offsets kept only in Bytewax recovery state), so that:

- a batch of messages is one `Lines` item (connectors/files.py), labelled
  `topic:partition` with the offsets as its line numbers: the raw JSON of
  each, decoded in one call by the stamp step, and the dead-letter position
  `topic:partition:offset` made only for a reject (a string per message
  cost more than its decoding's setup); a message without a value (a
  tombstone) is emitted with an empty payload and becomes a
  `malformed_json` dead letter;
- consumer errors never crash the flow: a message-level error is emitted as
  an empty payload at its position (a dead letter), a `(position, b"")`
  item between the batch's `Lines`; a client-level error
  (broker down, ...) is logged and skipped, librdkafka reconnects by itself,
  and while no broker connection is up the partition says so to `/readyz`
  (`Brokers`, from librdkafka's statistics);
- the snapshot is the next offset after the last message actually emitted.
  (Bytewax's partition moves its offset on error messages too, whose offset
  is negative; ours ignores those.) `start=latest` is fixed as a concrete
  offset (the high watermark) when the partition is first built, so a crash
  before the first message does not skip what arrived meanwhile. (Tansu,
  the test broker, reports the watermark as the last batch's base offset
  + 1: exact only when every produce request carries one message.)

Sink: a librdkafka producer that waits for the broker once per epoch, not
once per batch (`KafkaRecordSink`); each dict record becomes one message,
value = the record as JSON, key = `record[key]` (default `offer_id`, so a
repeat after a crash carries the same key as the original: a consumer
dedupes by key, and a compacted topic keeps one message per offer;
`customer_id` keeps one customer's offers in order on one partition
instead). At-least-once: after kill -9 the last epoch is produced again;
a message librdkafka gave up on is produced again before its epoch commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from threading import Lock
from typing import Any
from zlib import adler32

import orjson
from bytewax.connectors.kafka import KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError

from .errors import ConnectorError
from .files import Item, Lines  # `(label, None)`: the end of a partition (`tail=False` at EOF)

log = logging.getLogger(__name__)
STARTS = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}


STATS_MS = 1000  # how often librdkafka reports its brokers' states (`Brokers`)


class Brokers:
    """Whether a consumer has a broker connection up, from librdkafka's statistics.

    librdkafka reconnects by itself and reports a lost broker only as a log-level
    error, with nothing when it is back. Its statistics (JSON every `STATS_MS`,
    served inside `consume`) give each broker's state, so `lost()` can say when none
    is `UP` and stop saying it once one is. It costs one JSON parse a second per
    partition. Before the first report nothing is known and nothing is said.
    """

    def __init__(self) -> None:
        self.down: str | None = None
        self.reports = 0

    def report(self, stats: str) -> None:
        self.reports += 1
        brokers = orjson.loads(stats).get("brokers", {}).values()
        up = any(b.get("state") == "UP" for b in brokers)  # a lost broker leaves the list
        self.down = None if up else "no broker connection up, retrying"


class _PositionedPartition(StatefulSourcePartition[Item, int]):
    """One assigned topic partition, read with librdkafka directly: `Lines` of messages.

    Not Bytewax's own Kafka partition: that one builds a frozen dataclass per
    message (key, headers, latency, ...: 8 fields through `object.__setattr__`)
    which this flow never reads, and parses librdkafka's statistics JSON every
    second for a gauge it does not export. A live profile at 30k events/s put
    about 15 % of the process in that wrapping (bench/bench_live.py
    `--profile`); here a message costs one f-string and one tuple.
    """

    def __init__(
        self,
        consumer: Any,
        prefix: str,
        offset: int,
        label: str = "",
        batch: int = 1000,
        brokers: Brokers | None = None,
    ):
        """`consumer`: assigned to this partition; `prefix`: `topic:partition:`; `label`:
        `topic:partition`, sent as `(label, None)` at the end (`tail=False` with
        `end_markers`); "" sends nothing. `brokers`: the consumer's statistics (`lost`)."""
        self._consumer, self._prefix, self._batch = consumer, prefix, batch
        self._brokers = brokers
        self._part = prefix.removesuffix(":")  # `topic:partition`, the `Lines` label
        self._offset = offset
        self._label = label
        self._eof = False
        self._ended = not label

    def next_batch(self) -> list[Item]:
        """The messages as `Lines` (offsets as line numbers: `topic:partition:offset` made
        only for a reject), an error's dead letter between them; after the end of a
        `tail=False` partition its end marker."""
        if self._eof:
            return self._end()
        out: list[Item] = []
        payloads: list[bytes] = []
        offsets: list[int] = []
        last = -1
        for msg in self._consumer.consume(self._batch, 0.001):
            if msg.error() is None:
                last = msg.offset()
                offsets.append(last)
                payloads.append(msg.value() or b"")
                continue
            if msg.error().code() == ConfluentKafkaError._PARTITION_EOF:
                self._eof = True  # what came before it in this batch still goes out
                break
            item = _error_item(msg, self._prefix)
            if item is not None:
                out += self._lines(payloads, offsets)
                payloads, offsets = [], []
                out.append(item)
                last = msg.offset()
        out += self._lines(payloads, offsets)
        if last >= 0 and last + 1 > self._offset:  # error messages without a position: -1
            self._offset = last + 1
        return out

    def _lines(self, payloads: list[bytes], offsets: list[int]) -> list[Item]:
        """One `Lines` of messages read in a row (none for none): one item through the flow."""
        return [Lines(self._part, payloads, offsets[0], offsets)] if payloads else []

    def _end(self) -> list[Item]:
        if self._ended:
            raise StopIteration
        self._ended = True
        return [(self._label, None)]

    def snapshot(self) -> int:
        return self._offset

    def lost(self) -> str | None:
        """Why this partition cannot read now, or None: `/readyz` asks (flows/instrument.py)."""
        return self._brokers.down if self._brokers is not None else None

    def close(self) -> None:
        self._consumer.close()


def _error_item(msg: Any, prefix: str) -> Item | None:
    """A positioned error is a dead letter; a client error is only logged (never its payload)."""
    name = msg.error().name()
    offset = msg.offset()
    if offset is None or offset < 0:
        log.warning("kafka consumer error on %s: %s", prefix.rstrip(":"), name)
        return None
    log.warning("kafka message error at %s%s: %s", prefix, offset, name)
    return (f"{prefix}{offset}", b"")


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
        self.brokers, self.topics, self.config = list(brokers), list(topics), dict(config or {})
        self.tail, self.batch_size = tail, batch_size
        self.end_markers = False  # set by the flow when it reads several partitions
        # Bytewax's source only lists the partitions (its listing is the one recovery knows)
        self.lister = KafkaSource(list(brokers), list(topics), add_config=config)

    def list_parts(self) -> list[str]:
        return self.lister.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        if resume_state is None and self.start == OFFSET_END:
            resume_state = self._end_offset(for_part)
        idx, topic = for_part.split("-", 1)
        assert topic in self.topics, "cannot resume from a different set of Kafka topics"
        offset = self.start if resume_state is None else resume_state
        brokers = Brokers()
        stats = {"statistics.interval.ms": STATS_MS, "stats_cb": brokers.report}
        consumer = Consumer({**stats, **self._consumer_config()})  # the user's config wins
        consumer.assign([TopicPartition(topic, int(idx), offset)])  # no consumer group
        label = f"{topic}:{idx}" if self.end_markers else ""
        return _PositionedPartition(
            consumer, f"{topic}:{idx}:", offset, label, self.batch_size, brokers
        )

    def _consumer_config(self) -> dict:
        return {
            "group.id": "keymoment-unused",  # offsets live in the recovery snapshots
            "enable.auto.commit": False,
            "bootstrap.servers": ",".join(self.brokers),
            "enable.partition.eof": not self.tail,
            **self.config,
        }

    def _end_offset(self, for_part: str) -> int:
        """`latest` fixed as a number now, so a snapshot taken before any message is exact."""
        idx, topic = for_part.split("-", 1)
        consumer = Consumer(self._consumer_config())
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, int(idx)), 10.0)
        finally:
            consumer.close()
        return high


class _RecordPartition(StatefulSinkPartition[dict, None]):
    """Produces without waiting; `snapshot` (each epoch's end) waits for the broker's acks."""

    def __init__(self, sink: KafkaRecordSink):
        self._sink = sink
        self._producer = sink.producer()

    def write_batch(self, items: list[dict]) -> None:
        produce, topic, key = self._producer.produce, self._sink.topic, self._sink.key
        for record in items:
            value = record.get(key)
            message = orjson.dumps(record), None if value is None else str(value).encode()
            try:
                produce(topic, *message)
            except BufferError:  # librdkafka's queue is full
                self._sink.produce(*message)
        self._producer.poll(0)  # delivery reports of earlier batches

    def snapshot(self) -> None:
        """Everything written in this epoch is on the broker before the epoch commits."""
        self._sink.settle()

    def close(self) -> None:
        self._sink.settle()


class KafkaRecordSink(FixedPartitionedSink[dict, None]):
    """Dict records as JSON messages on `topic`, keyed by `record[key]`.

    Bytewax's own `KafkaSink` flushes the producer after every batch: the
    worker then waits for the broker's acknowledgement each time any output
    is written, twice per batch with offers and the decision log on Kafka,
    which on the wall clock means once every few milliseconds. Here a batch
    is handed to librdkafka without waiting (it sends after its linger, 5 ms
    by default) and the wait is once per epoch, in `snapshot`, which Bytewax
    calls at each epoch's end before that epoch's state is committed: a
    message of a committed epoch is on the broker, and after kill -9 the
    epochs after the last commit are produced again (at-least-once, as
    before; a consumer dedupes by the key).

    The sink has `parts` partitions, all writing to the same topic: they only
    decide which worker writes what. `route` maps an item's key to one of them;
    the flow sets both so that each shard's records are written by the worker
    that owns the shard (`keymoment.flows.outputs.keep_local`), and nothing
    crosses workers. By default: one partition (one worker writes all).
    One producer per process, shared by its partitions (librdkafka's is
    thread-safe).

    Nothing is dropped: librdkafka reports only the messages it gave up on
    (`delivery.report.only.error`, so a delivered message costs no Python
    call). One that timed out (the broker unreachable or stalled for longer
    than `message.timeout.ms`) is produced again at the epoch's end, and the
    epoch does not commit until it is on the broker: a broker outage stalls
    the flow, it does not lose offers. One the broker refused for good (too
    large for it, not authorised, no such topic) stops the flow with
    `KafkaSinkError`, naming the topic and the reason.
    """

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str,
        key: str = "offer_id",
        config: dict | None = None,
    ):
        self.brokers, self.topic, self.key = list(brokers), topic, key
        self.config = {"bootstrap.servers": ",".join(self.brokers), **(config or {})}
        self.parts = 1
        self.route: Callable[[str], int] = _adler32
        self._producer: Producer | None = None
        self._lock = Lock()
        self._undelivered: list[tuple[bytes, bytes | None]] = []

    def producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(
                    {
                        **self.config,
                        "error_cb": _log_error,
                        "on_delivery": self._on_delivery,
                        "delivery.report.only.error": True,
                    }
                )
            return self._producer

    def produce(self, value: bytes, key: bytes | None) -> None:
        """Hands one message to librdkafka, letting it send first while its queue is full."""
        producer = self.producer()
        while True:
            try:
                producer.produce(self.topic, value, key)
                return
            except BufferError:
                producer.poll(0.05)

    def settle(self) -> None:
        """Returns once every message produced so far is on the broker (class docstring)."""
        producer = self.producer()
        producer.flush()
        while self._undelivered:
            with self._lock:
                again, self._undelivered = self._undelivered, []
            log.warning(
                "kafka sink: %d messages to %s were not acknowledged in time; producing them again",
                len(again),
                self.topic,
            )
            for value, key in again:
                self.produce(value, key)
            producer.flush()

    def _on_delivery(self, error: ConfluentKafkaError | None, message: Any) -> None:
        """librdkafka gave up on `message` (only failures are reported)."""
        if error is None:
            return
        if error.code() not in _TRY_AGAIN and not error.retriable():
            raise KafkaSinkError(
                f"kafka sink: the broker refused a message to {self.topic}: {error.str()}"
            )
        with self._lock:
            self._undelivered.append((message.value(), message.key()))

    def list_parts(self) -> list[str]:
        return [f"part-{i:02d}" for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return self.route(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _RecordPartition:
        return _RecordPartition(self)


class KafkaSinkError(ConnectorError):
    """The broker refused a message for good: the flow stops rather than drop it."""


# Errors after which the same message may well be accepted later.
_TRY_AGAIN = {
    ConfluentKafkaError._MSG_TIMED_OUT,
    ConfluentKafkaError._TIMED_OUT,
    ConfluentKafkaError._TRANSPORT,
    ConfluentKafkaError._ALL_BROKERS_DOWN,
}


def _adler32(key: str) -> int:
    return adler32(key.encode())


def _log_error(error: ConfluentKafkaError) -> None:
    """A client-level error (broker down...): librdkafka retries by itself; said once each."""
    log.warning("kafka sink: %s", error.str())
