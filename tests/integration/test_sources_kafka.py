"""Kafka source against a real Tansu broker: positions, tombstones, resume from the offset."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from keymoment.connectors.files import Lines
from keymoment.connectors.kafka import KafkaEventSource, _PositionedPartition
from tests.support.items import flat, pairs


def create_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=15)
    return name


def produce(bootstrap: str, topic: str, values: list[bytes | None], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(15) == 0


def _collect(source: KafkaEventSource, db: Path | None = None) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    flow = Dataflow("kafka-in")
    op.output("out", op.flat_map("pairs", op.input("in", flow, source), flat), TestingSink(got))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=db and RecoveryConfig(db))
    return got


def _values(prefix: str, start: int, n: int) -> list[bytes | None]:
    return [orjson.dumps({"event_id": f"{prefix}{i}"}) for i in range(start, start + n)]


def test_two_topics_give_positions_and_values_and_tombstones_become_empty(kafka_broker) -> None:
    """All messages of a transactions and an app topic comes out as (`topic:part:offset`, value)."""
    tx, app = create_topic(kafka_broker.bootstrap, 2), create_topic(kafka_broker.bootstrap)
    produce(kafka_broker.bootstrap, tx, _values("a", 0, 30), partition=0)
    produce(kafka_broker.bootstrap, tx, _values("b", 0, 20), partition=1)
    produce(kafka_broker.bootstrap, app, [*_values("c", 0, 2), None])
    got = dict(_collect(KafkaEventSource([kafka_broker.bootstrap], [tx, app], tail=False)))
    expected = {f"{tx}:0:{i}": v for i, v in enumerate(_values("a", 0, 30))}
    expected |= {f"{tx}:1:{i}": v for i, v in enumerate(_values("b", 0, 20))}
    expected |= {f"{app}:0:{i}": v for i, v in enumerate([*_values("c", 0, 2), b""])}
    assert got == expected


def test_recovery_resumes_from_the_snapshotted_offset(kafka_broker, tmp_path) -> None:
    """A second run on the same recovery store reads only the messages produced since."""
    topic, db = create_topic(kafka_broker.bootstrap), tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    produce(kafka_broker.bootstrap, topic, _values("x", 0, 25))
    source = KafkaEventSource([kafka_broker.bootstrap], [topic], tail=False, batch_size=4)
    assert len(_collect(source, db)) == 25
    produce(kafka_broker.bootstrap, topic, _values("x", 25, 5))
    got = _collect(source, db)
    later = _values("x", 25, 5)
    assert got == [(f"{topic}:0:{25 + i}", v) for i, v in enumerate(later)]


def test_unknown_start_is_refused() -> None:
    """A start other than earliest/latest is a one-line ValueError."""
    with pytest.raises(ValueError, match="earliest or latest"):
        KafkaEventSource(["127.0.0.1:1"], ["t"], start="middle")


class _Message:
    """Stands in for a librdkafka message, only to inject errors a live broker never sends."""

    def __init__(self, offset: int, value: bytes | None = b"{}", code: int | None = None):
        self._offset, self._value = offset, value
        self._error = ConfluentError(code) if code is not None else None

    def error(self) -> ConfluentError | None:
        return self._error

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value


class _Scripted:
    """A consumer whose `consume` returns the given batches in turn."""

    def __init__(self, batches: list[list[_Message]]):
        self.batches = batches

    def consume(self, _count: int, _timeout: float) -> list[_Message]:
        return self.batches.pop(0)


def test_consumer_errors_become_dead_letter_items_or_are_skipped() -> None:
    """A positioned error is emitted empty at its offset; a client error is skipped."""
    transport = _Message(-1001, None, ConfluentError._TRANSPORT)
    broken = _Message(5, b"oops", ConfluentError._MSG_TIMED_OUT)
    batches = [[_Message(3), _Message(4)], [transport, broken], [transport]]
    part = _PositionedPartition(_Scripted(batches), "tx:0:", -2)
    first = part.next_batch()
    assert len(first) == 1 and isinstance(first[0], Lines)  # one item for the whole batch
    assert pairs(first) == [("tx:0:3", b"{}"), ("tx:0:4", b"{}")]
    assert part.snapshot() == 5
    assert part.next_batch() == [("tx:0:5", b"")]
    assert part.snapshot() == 6
    assert part.next_batch() == [] and part.snapshot() == 6


def test_an_error_between_messages_keeps_its_place() -> None:
    """Messages, a positioned error, messages: the dead letter sits between the two runs."""
    broken = _Message(5, b"oops", ConfluentError._MSG_TIMED_OUT)
    part = _PositionedPartition(_Scripted([[_Message(4), broken, _Message(6)]]), "tx:2:", -2)
    items = part.next_batch()
    assert [type(item) for item in items] == [Lines, tuple, Lines]
    assert pairs(items) == [("tx:2:4", b"{}"), ("tx:2:5", b""), ("tx:2:6", b"{}")]
    assert part.snapshot() == 7


def test_end_of_partition_sends_its_marker_once_then_stops() -> None:
    """`tail=False` with end markers: the batch before EOF, then `(topic:partition, None)`."""
    eof = _Message(-1001, None, ConfluentError._PARTITION_EOF)
    part = _PositionedPartition(_Scripted([[_Message(0), eof]]), "tx:1:", -2, label="tx:1")
    assert pairs(part.next_batch()) == [("tx:1:0", b"{}")]
    assert part.next_batch() == [("tx:1", None)]
    with pytest.raises(StopIteration):
        part.next_batch()


def test_latest_is_fixed_when_first_built_so_a_resume_misses_nothing(kafka_broker, tmp_path):
    """`start=latest` skips old messages; messages sent while the flow is down are read later."""
    topic, db = create_topic(kafka_broker.bootstrap), tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    for value in _values("old", 0, 3):  # one per request: Tansu's watermark counts batches
        produce(kafka_broker.bootstrap, topic, [value])
    source = KafkaEventSource([kafka_broker.bootstrap], [topic], start="latest", tail=False)
    assert _collect(source, db) == []
    produce(kafka_broker.bootstrap, topic, _values("new", 0, 2))
    assert [v for _, v in _collect(source, db)] == _values("new", 0, 2)


def test_a_partition_says_when_its_broker_is_lost_and_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`lost()` (what `/readyz` asks) from librdkafka's statistics: None while the broker
    is up; a reason once it is killed; None again once a broker answers on its address."""
    import time

    from tests.support.servers import KafkaBroker

    broker = KafkaBroker().start()
    try:
        topic = create_topic(broker.bootstrap)
        produce(broker.bootstrap, topic, _values("a", 0, 3))
        part = KafkaEventSource([broker.bootstrap], [topic]).build_part("in", f"0-{topic}", None)

        def polled(until) -> bool:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                part.next_batch()  # serves the statistics callback
                if until():
                    return True
                time.sleep(0.05)
            return False

        assert polled(lambda: part._brokers.reports > 0 and part.lost() is None)  # type: ignore[union-attr]
        broker.stop()
        assert polled(lambda: part.lost() is not None)
        assert part.lost() == "no broker connection up, retrying"
        broker.start()
        assert polled(lambda: part.lost() is None)
        part.close()
    finally:
        broker.stop()
