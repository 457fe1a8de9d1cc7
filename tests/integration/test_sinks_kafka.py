"""Kafka sink against a real Tansu broker: one JSON message per record, keyed."""

from __future__ import annotations

import signal

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Consumer, KafkaError, TopicPartition

from keymoment.connectors.kafka import KafkaRecordSink, KafkaSinkError
from keymoment.flows.outputs import keep_local, output
from keymoment.flows.placement import SPREAD, shard_key
from tests.integration.test_sources_kafka import create_topic
from tests.support.servers import KafkaBroker


def read_topic(bootstrap: str, topic: str, partition: int = 0) -> list[tuple[bytes, bytes]]:
    """Everything on one partition as (key, value), read with an assignment."""
    return [(key, value) for key, value, _ in read_messages(bootstrap, topic, partition)]


def read_messages(bootstrap: str, topic: str, partition: int = 0) -> list[tuple[bytes, bytes, int]]:
    """Everything on one partition as (key, value, producer timestamp in ms), read with an
    assignment (Tansu hangs on group joins)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    out: list[tuple[bytes, bytes, int]] = []
    try:
        while True:
            msg = consumer.poll(10)
            assert msg is not None, "timed out reading the topic"
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                return out
            out.append((msg.key(), msg.value(), msg.timestamp()[1]))
    finally:
        consumer.close()


def test_records_can_be_keyed_by_customer(kafka_broker) -> None:
    """With key=customer_id each record is produced once, in order, keyed by its customer."""
    topic = create_topic(kafka_broker.bootstrap)
    records = [{"offer_id": f"{i:032x}", "customer_id": f"c{i % 7}"} for i in range(200)]
    flow = Dataflow("kafka-out")
    items = op.input("in", flow, TestingSource(records, batch_size=25))
    output("out", items, KafkaRecordSink([kafka_broker.bootstrap], topic, key="customer_id"))
    run_main(flow)
    got = read_topic(kafka_broker.bootstrap, topic)
    assert [(k.decode(), orjson.loads(v)) for k, v in got] == [
        (r["customer_id"], r) for r in records
    ]


def test_the_key_is_the_offer_id_by_default(kafka_broker) -> None:
    """By default every message is keyed by its offer's deterministic id (a repeat's key too)."""
    topic = create_topic(kafka_broker.bootstrap)
    records = [{"offer_id": f"{i:032x}", "customer_id": "c"} for i in range(3)]
    flow = Dataflow("kafka-out-key")
    items = op.input("in", flow, TestingSource(records))
    output("out", items, KafkaRecordSink([kafka_broker.bootstrap], topic))
    run_main(flow)
    assert [k.decode() for k, _ in read_topic(kafka_broker.bootstrap, topic)] == [
        r["offer_id"] for r in records
    ]


def test_a_batch_is_on_the_broker_when_its_epoch_snapshot_returns(kafka_broker) -> None:
    """Writes do not wait for the broker; the epoch's snapshot does (at-least-once).

    With a linger of a minute nothing is sent by itself: the messages are on
    the topic only because `snapshot` (called by Bytewax at each epoch's end,
    before the epoch commits) waited for them.
    """
    topic = create_topic(kafka_broker.bootstrap)
    sink = KafkaRecordSink([kafka_broker.bootstrap], topic, config={"linger.ms": 60_000})
    part = sink.build_part("out", sink.list_parts()[0], None)
    records = [{"offer_id": f"{i:032x}"} for i in range(50)]
    part.write_batch(records)
    assert read_topic(kafka_broker.bootstrap, topic) == []
    part.snapshot()
    assert [orjson.loads(v) for _, v in read_topic(kafka_broker.bootstrap, topic)] == records
    part.close()


def test_messages_the_client_gave_up_on_are_produced_again_at_the_epoch_end() -> None:
    """A stalled broker makes librdkafka time messages out; the snapshot sends them again.

    The broker (one of this test's own) is stopped with SIGSTOP, so the
    messages written meanwhile time out after `message.timeout.ms` and the
    client reports them failed. Once the broker runs again, the epoch's
    snapshot produces them again and returns only when they are on the topic.
    """
    broker = KafkaBroker().start()
    try:
        topic = create_topic(broker.bootstrap)
        config = {"message.timeout.ms": 1000, "request.timeout.ms": 500}
        sink = KafkaRecordSink([broker.bootstrap], topic, config=config)
        part = sink.build_part("out", sink.list_parts()[0], None)
        records = [{"offer_id": f"{i:032x}"} for i in range(50)]
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            part.write_batch(records)
            sink.producer().flush()  # returns once every message is delivered or given up
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        assert len(sink._undelivered) == len(records)
        part.snapshot()
        got = [orjson.loads(v) for _, v in read_topic(broker.bootstrap, topic)]
        assert {r["offer_id"] for r in got} == {r["offer_id"] for r in records}  # repeats allowed
        part.close()
    finally:
        broker.stop()


def test_a_message_the_broker_refuses_for_good_stops_the_flow() -> None:
    """A permanent refusal (here: not authorised) is not retried forever: it names the topic."""
    sink = KafkaRecordSink(["127.0.0.1:9"], "offers")
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaSinkError, match="refused a message to offers"):
        sink._on_delivery(refused, None)
    sink._on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Message(b"{}", b"k"))
    assert sink._undelivered == [(b"{}", b"k")]


class _Message:
    """What `_on_delivery` reads of a confluent_kafka message."""

    def __init__(self, value: bytes, key: bytes) -> None:
        self._value, self._key = value, key

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key


def test_the_flow_routes_each_shard_to_the_sink_partition_of_its_worker() -> None:
    """`keep_local`: shard `s` goes to partition `s % SPREAD`, built on worker `s % W`."""
    sink = keep_local(KafkaRecordSink(["127.0.0.1:9"], "t"))
    assert len(sink.list_parts()) == SPREAD
    for s in range(16):
        assert sink.part_fn(shard_key(s)) % SPREAD == s % SPREAD
    assert sink.part_fn("") == KafkaRecordSink(["127.0.0.1:9"], "t").part_fn("")
