"""Several input partitions decide exactly what the backtest of the merged stream decides.

Real runs: `keymoment run --clock event` reading a Kafka topic of four
partitions on the real Tansu broker, and reading four files (a glob, one
partition each), each customer's events on one partition in time order;
`keymoment backtest` on the single merged file is the reference. With the
watermark as the minimum over partitions (flows/partitions.py) the decision
logs are equal, record for record except `decided_at`.
"""

from __future__ import annotations

import uuid
import zlib
from pathlib import Path

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from test_run_kafka_redis import RULES, decisions, keymoment  # the sibling test module

from keymoment.connectors.generator import Generator

PARTS = 4


def part_of(line: bytes) -> int:
    return zlib.crc32(orjson.loads(line)["customer_id"].encode()) % PARTS


def world(tmp_path: Path) -> tuple[list[bytes], Generator, tuple]:
    gen = Generator(seed=43, customers=300, days=200, noise=0.0)
    lines = list(gen.iter_bytes())
    (tmp_path / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    customers = tmp_path / "customers.jsonl"
    customers.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    common = ("--rules", RULES, "--until", gen.until_at.isoformat())
    out = tmp_path / "backtest.jsonl"
    backtest = keymoment("backtest", *common, "--customers", customers, "--events",
                         tmp_path / "events.jsonl", "--decisions", out)  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    return lines, gen, (*common, "--customers", f"file:{customers}", "--clock", "event")


def test_kafka_with_four_partitions_decides_what_the_merged_backtest_decides(
    kafka_broker, tmp_path: Path
) -> None:
    lines, _, common = world(tmp_path)
    topic = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTS, replication_factor=1)])[
        topic
    ].result(timeout=15)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for line in lines:
        producer.produce(topic, value=line, partition=part_of(line))
    assert producer.flush(15) == 0
    run = keymoment("run", *common, "--shards", "3", "--batch-size", "97", "--source",
                    f"kafka://{kafka_broker.bootstrap}/{topic}?tail=0",
                    "--decisions", f"file:{tmp_path / 'kafka.jsonl'}")  # fmt: skip
    assert run.returncode == 0, run.stderr
    expected = decisions(tmp_path / "backtest.jsonl")
    assert len(expected) > 300
    assert decisions(tmp_path / "kafka.jsonl") == expected


def test_four_files_decide_what_the_merged_backtest_decides(tmp_path: Path) -> None:
    lines, _, common = world(tmp_path)
    parts = [tmp_path / f"part-{k}.jsonl" for k in range(PARTS)]
    for k, path in enumerate(parts):
        path.write_bytes(b"".join(line + b"\n" for line in lines if part_of(line) == k))
    out = tmp_path / "f.jsonl"
    run = keymoment("run", *common, "--batch-size", "250", "--source",
                    f"file:{tmp_path}/part-*.jsonl", "--decisions", f"file:{out}")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert decisions(tmp_path / "f.jsonl") == decisions(tmp_path / "backtest.jsonl")
