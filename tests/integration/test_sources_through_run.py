"""Connectors end to end through `keymoment run`: Kafka in; Kafka, Redis, webhook, files out."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import redis
from confluent_kafka import Producer

from keymoment.connectors.generator import Generator
from tests.integration.test_sinks_kafka import read_topic
from tests.integration.test_sources_kafka import create_topic
from tests.support.gateway import Gateway

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"e2e-secret-key-bytes").decode()


def _produce(bootstrap: str, topic: str, events: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for event in events:
        producer.produce(topic, value=event)
    assert producer.flush(15) == 0


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_kafka_events_reach_every_channel_sink_once(tmp_path, kafka_broker, redis_server) -> None:
    """Each sent offer lands once on its channel's sink; bad messages die at their offsets."""
    gen = Generator(seed=11, customers=300, days=200, noise=0.01)
    customers = tmp_path / "customers.jsonl"
    customers.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    tx, sms = create_topic(kafka_broker.bootstrap), create_topic(kafka_broker.bootstrap)
    _produce(kafka_broker.bootstrap, tx, list(gen.iter_bytes()))
    stream = f"push-{tx}"
    gateway = Gateway(SECRET).start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "keymoment",
                "run",
                "--rules",
                str(REPO / "examples/rules.yaml"),
                "--clock",
                "event",
                "--source",
                f"kafka://{kafka_broker.bootstrap}/{tx}?tail=0",
                "--customers",
                f"file:{customers}",
                "--sink",
                f"sms=kafka://{kafka_broker.bootstrap}/{sms}?key=offer_id",
                "--sink",
                f"app_push={redis_server.url}?stream={stream}",
                "--sink",
                f"webhook+{gateway.url}?secret_env=KM_E2E_SECRET",
                "--decisions",
                f"file:{tmp_path / 'decisions.jsonl'}",
                "--dead-letters",
                f"file:{tmp_path / 'dead.jsonl'}",
            ],
            env=dict(os.environ, KM_E2E_SECRET=SECRET),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    finally:
        gateway.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    sent = [d for d in _lines(tmp_path / "decisions.jsonl") if d["outcome"] == "sent"]
    by_channel = {
        c: {d["offer_id"] for d in sent if d["channel"] == c} for c in {d["channel"] for d in sent}
    }
    assert by_channel["sms"] and by_channel["app_push"] and len(by_channel) > 2
    on_kafka = [key.decode() for key, _ in read_topic(kafka_broker.bootstrap, sms)]
    assert sorted(on_kafka) == sorted(by_channel["sms"])
    entries = redis.Redis.from_url(redis_server.url).xrange(stream)
    assert sorted(orjson.loads(f[b"data"])["offer_id"] for _, f in entries) == sorted(
        by_channel["app_push"]
    )
    others = set().union(*(ids for c, ids in by_channel.items() if c not in ("sms", "app_push")))
    assert set(gateway.accepted) == others and set(gateway.accepted.values()) == {1}
    assert gateway.bad_signatures == 0
    dead = _lines(tmp_path / "dead.jsonl")
    assert dead and all(re.fullmatch(rf"{tx}:0:\d+", d["source"]) for d in dead)
    assert SECRET not in result.stderr + result.stdout
