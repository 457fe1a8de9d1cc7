"""Kafka source against a real Tansu broker: positions, tombstones, resume from the offset."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import StatefulSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from keymoment.connectors.kafka import KafkaEventSource, _PositionedPartition


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
    op.output("out", op.input("in", flow, source), TestingSink(got))
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


class _Scripted(StatefulSourcePartition):
    """Stands in for Bytewax's Kafka partition only to inject errors a live broker never sends."""

    def __init__(self, batches: list[list]):
        self.batches = batches

    def next_batch(self) -> list:
        return self.batches.pop(0)

    def snapshot(self) -> None:
        return None


def _msg(offset: int | None, value: bytes | None = b"{}") -> KafkaSourceMessage:
    return KafkaSourceMessage(key=None, value=value, topic="tx", partition=0, offset=offset)


def test_consumer_errors_become_dead_letter_items_or_are_skipped() -> None:
    """A positioned error is emitted empty at its offset; a client error is skipped."""
    transport = KafkaError(ConfluentError(ConfluentError._TRANSPORT), _msg(-1001, None))
    broken = KafkaError(ConfluentError(ConfluentError._MSG_TIMED_OUT), _msg(5, b"oops"))
    part = _PositionedPartition(_Scripted([[_msg(3), _msg(4)], [transport, broken]]), None, -2)
    assert part.next_batch() == [("tx:0:3", b"{}"), ("tx:0:4", b"{}")]
    assert part.snapshot() == 5
    assert part.next_batch() == [("tx:0:5", b"")]
    assert part.snapshot() == 6


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
