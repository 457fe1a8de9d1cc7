"""`keymoment run` end to end: Kafka in, Kafka out, caps in Redis; and its one-line errors.

A real Tansu broker and a real redis-server (the conftest fixtures). The same
events go once through Kafka with a Redis cap store and once through a file
with the in-memory cap store: the decision logs must be equal, and the
offers topic must carry exactly the `sent` offers.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from keymoment.connectors.generator import Generator
from tests.support.cli import keymoment

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


def create_topic(bootstrap: str) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(
        timeout=15
    )
    return name


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(15) == 0


def read_topic(bootstrap: str, topic: str) -> list[dict]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    try:
        while True:
            msg = consumer.poll(10)
            assert msg is not None, "timed out reading the topic"
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                return out
            out.append(orjson.loads(msg.value()))
    finally:
        consumer.close()


def decisions(path: Path) -> set[bytes]:
    rows = map(orjson.loads, path.read_bytes().splitlines())
    return {
        orjson.dumps({k: v for k, v in r.items() if k != "decided_at"}, option=orjson.OPT_SORT_KEYS)
        for r in rows
    }


def test_run_kafka_to_kafka_with_redis_caps_equals_file_run(
    kafka_broker, redis_server, tmp_path: Path
) -> None:
    """Kafka in/out with a Redis cap store decides what a file run with memory caps decides."""
    gen = Generator(seed=41, customers=200, days=200, noise=0.01)
    lines = list(gen.iter_bytes())
    events, customers = tmp_path / "events.jsonl", tmp_path / "customers.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    customers.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    tx, offers = create_topic(kafka_broker.bootstrap), create_topic(kafka_broker.bootstrap)
    produce(kafka_broker.bootstrap, tx, lines)
    common = (
        "--rules",
        RULES,
        "--customers",
        f"file:{customers}",
        "--clock",
        "event",
        "--until",
        gen.until_at.isoformat(),
    )
    by_file = keymoment(
        "run",
        *common,
        "--source",
        f"file:{events}",
        "--decisions",
        f"file:{tmp_path / 'file-decisions.jsonl'}",
    )
    assert by_file.returncode == 0, by_file.stderr
    by_kafka = keymoment(
        "run",
        *common,
        "--source",
        f"kafka://{kafka_broker.bootstrap}/{tx}?tail=0",
        "--sink",
        f"kafka://{kafka_broker.bootstrap}/{offers}",
        "--decisions",
        f"file:{tmp_path / 'kafka-decisions.jsonl'}",
        "--state",
        redis_server.url,
    )
    assert by_kafka.returncode == 0, by_kafka.stderr
    logged = decisions(tmp_path / "kafka-decisions.jsonl")
    assert len(logged) > 100
    assert logged == decisions(tmp_path / "file-decisions.jsonl")
    sent = {orjson.loads(d)["offer_id"] for d in logged if orjson.loads(d)["outcome"] == "sent"}
    delivered = [o["offer_id"] for o in read_topic(kafka_broker.bootstrap, offers)]
    assert sorted(delivered) == sorted(sent)
    assert redis.Redis.from_url(redis_server.url).dbsize() > 0, "no cap reservation reached Redis"


def test_run_reports_a_bad_url_in_one_line(tmp_path: Path) -> None:
    """An unknown URL scheme is one line on stderr and exit code 2, no traceback."""
    done = keymoment("run", "--rules", RULES, "--source", "nats://x/y")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "nats://x/y" in done.stderr


def test_run_reports_an_unreachable_server_in_one_line() -> None:
    """A Kafka server that does not answer is one line naming host:port."""
    done = keymoment("run", "--rules", RULES, "--source", "kafka://127.0.0.1:1/tx")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "127.0.0.1:1" in done.stderr


def test_run_reports_an_invalid_rules_file_in_one_line(tmp_path: Path) -> None:
    """A rules file with a problem is one line naming the file and the first problem."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: [{rule_id: x, trigger: nope, campaign: c}]\n")
    events = tmp_path / "events.jsonl"
    events.write_text("")
    done = keymoment("run", "--rules", rules, "--source", f"file:{events}")
    assert done.returncode == 2
    assert (
        done.stderr.strip().count("\n") == 0
        and str(rules) in done.stderr
        and "rules[0]" in done.stderr
    )
