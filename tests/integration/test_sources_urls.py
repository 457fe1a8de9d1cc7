"""URL forms for sources and customer data: the right connector, or a one-line ValueError."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from keymoment.connectors.files import JsonlFileSource
from keymoment.connectors.kafka import KafkaEventSource
from keymoment.connectors.redis_streams import RedisStreamSource
from keymoment.connectors.synthetic import GeneratorSource
from keymoment.connectors.urls import profiles_from_url, source_from_url
from tests.integration.test_sources_kafka import create_topic
from tests.support.items import pairs
from tests.support.servers import free_port


def test_file_forms_all_give_the_jsonl_source(tmp_path: Path) -> None:
    """`file:PATH`, `file:///abs`, a plain path and `.gz` all build a JSONL file source."""
    plain, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    plain.write_text("{}\n")
    packed.write_bytes(gzip.compress(b"{}\n"))
    for url in (f"file:{plain}", f"file://{plain}", str(plain), f"file:{packed}"):
        source = source_from_url(url, batch_size=7)
        assert isinstance(source, JsonlFileSource) and source.batch_size == 7
    assert source_from_url(f"file:{packed}").paths == [packed]
    assert source_from_url(f"file:{tmp_path}/*.json*").paths == [plain, packed]
    with pytest.raises(ValueError, match="no input file matches"):
        source_from_url(f"file:{tmp_path}/*.csv")


def test_kafka_url_lists_topics_and_checks_they_exist(kafka_broker) -> None:
    """`kafka://host:port/t1,t2` reads both topics; a missing topic is a one-line error."""
    tx, app = create_topic(kafka_broker.bootstrap), create_topic(kafka_broker.bootstrap)
    source = source_from_url(f"kafka://{kafka_broker.bootstrap}/{tx},{app}?tail=0")
    assert isinstance(source, KafkaEventSource)
    assert sorted(source.list_parts()) == sorted([f"0-{tx}", f"0-{app}"])
    with pytest.raises(ValueError, match="kafka topic 'nope' does not exist"):
        source_from_url(f"kafka://{kafka_broker.bootstrap}/nope")


def test_kafka_fetch_wait_reaches_the_consumer_and_reads(kafka_broker) -> None:
    """`fetch_wait_ms=N` becomes librdkafka's `fetch.wait.max.ms` of every partition's consumer.

    Tansu answers an empty fetch only after that wait (500 ms by default), so
    a live run on it needs a short one (bench/bench_live.py); the messages
    still all arrive.
    """
    from confluent_kafka import Producer

    tx = create_topic(kafka_broker.bootstrap)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i in range(3):
        producer.produce(tx, value=b'{"n": %d}' % i, partition=0)
    assert producer.flush(15) == 0
    source = source_from_url(f"kafka://{kafka_broker.bootstrap}/{tx}?tail=0&fetch_wait_ms=10")
    assert isinstance(source, KafkaEventSource) and source.config == {"fetch.wait.max.ms": 10}
    part = source.build_part("in", f"0-{tx}", None)
    values: list[bytes | None] = []
    with pytest.raises(StopIteration):
        for _ in range(10_000):
            values += [value for _pos, value in pairs(part.next_batch())]
    assert values == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    with pytest.raises(ValueError, match="parameter fetch_wait_ms='soon' is not valid"):
        source_from_url(f"kafka://{kafka_broker.bootstrap}/{tx}?fetch_wait_ms=soon")


def test_redis_url_gives_one_partition_per_stream(redis_server) -> None:
    """`redis://...?stream=tx&stream=app` reads both streams, from the start by default."""
    source = source_from_url(f"{redis_server.url}?stream=tx&stream=app&batch=50")
    assert isinstance(source, RedisStreamSource)
    assert source.list_parts() == ["tx", "app"] and source.batch_size == 50
    assert source.start == "0" and source.url == redis_server.url


def test_generator_url_sets_rate_customers_and_seed() -> None:
    """`generator:?customers=..&rate=..&seed=..` builds a paced, live generator source."""
    source = source_from_url("generator:?customers=50&rate=2000&seed=3&count=10")
    assert isinstance(source, GeneratorSource)
    assert (source.rate, source.count, source.live) == (2000.0, 10, True)
    assert source.factory.customers == 50 and source.factory.seed == 3


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x/y", "unsupported source URL"),
        ("file:", "file URL needs a path"),
        ("file:/nonexistent/x.jsonl", "input file not found"),
        ("kafka://", "kafka URL must be"),
        ("redis://127.0.0.1:1/0", "needs \\?stream=NAME"),
        ("generator:?customers=10&colour=red", "unknown parameter 'colour'"),
        ("generator:?rate=fast", "parameter rate='fast' is not valid"),
    ],
)
def test_bad_source_urls_are_one_line_errors(url: str, message: str) -> None:
    """Each malformed URL is refused with a ValueError naming the problem."""
    with pytest.raises(ValueError, match=message) as info:
        source_from_url(url)
    assert "\n" not in str(info.value)


def test_unreachable_servers_are_one_line_errors() -> None:
    """A Redis or Kafka server that does not answer is named (host:port, no password)."""
    port = free_port()
    with pytest.raises(ValueError, match=f"cannot reach redis at 127.0.0.1:{port}") as info:
        source_from_url(f"redis://:hunter2@127.0.0.1:{port}/0?stream=tx")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match=f"cannot reach kafka at 127.0.0.1:{port}"):
        source_from_url(f"kafka://127.0.0.1:{port}/tx")


def test_customers_from_jsonl_redis_hashes_and_the_generator(tmp_path, redis_server) -> None:
    """Profiles load from a JSONL file, from Redis hashes (both consent forms) and the generator."""
    path = tmp_path / "customers.jsonl"
    path.write_bytes(orjson.dumps({"customer_id": "c1", "consent": {"sms": True}}) + b"\nbad\n")
    assert profiles_from_url(f"file:{path}")["c1"].consents_to("sms")
    prefix = f"cust-{uuid.uuid4().hex[:6]}:"
    client = redis.Redis.from_url(redis_server.url)
    client.hset(
        f"{prefix}c1",
        mapping={
            "timezone": "Europe/Prague",
            "tags": "vip, new",
            "consent.sms": "1",
            "consent.app_push": "no",
        },
    )
    client.hset(
        f"{prefix}c2",
        mapping={
            "consent": '{"email": true}',
            "tags": '["a"]',
            "opened_at": "2024-01-05T10:00:00Z",
            "segment": "",
        },
    )
    client.hset(f"{prefix}c3", mapping={"timezone": "Mars/Olympus"})
    got = profiles_from_url(f"{redis_server.url}?prefix={prefix}")
    assert set(got) == {"c1", "c2"}
    assert got["c1"].consent == {"sms": True, "app_push": False}
    assert got["c1"].tags == ("vip", "new") and got["c1"].timezone == "Europe/Prague"
    assert got["c2"].consent == {"email": True} and got["c2"].segment is None
    assert got["c2"].opened_at.year == 2024 and got["c2"].tags == ("a",)
    generated = profiles_from_url("generator:?customers=20&seed=3")
    assert len(generated) == 20
