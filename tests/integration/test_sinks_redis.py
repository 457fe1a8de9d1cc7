"""Redis Stream sink against a real redis-server, inside Bytewax runs."""

from __future__ import annotations

import threading
import uuid

import bytewax.operators as op
import orjson
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from keymoment.connectors.redis_streams import RedisStreamSink
from keymoment.flows.outputs import output


def _run(records: list[dict], sink: RedisStreamSink) -> None:
    flow = Dataflow("redis-out")
    output("out", op.input("in", flow, TestingSource(records, batch_size=50)), sink)
    run_main(flow)


def _offers(n: int) -> list[dict]:
    return [{"offer_id": f"{i:032x}", "customer_id": f"c{i}", "channel": "sms"} for i in range(n)]


def test_each_record_becomes_one_entry_with_json_in_field_data(redis_server) -> None:
    """XADD writes every record, in order, as JSON in the `data` field."""
    stream, records = f"offers-{uuid.uuid4().hex}", _offers(120)
    _run(records, RedisStreamSink(redis_server.url, stream))
    entries = redis.Redis.from_url(redis_server.url).xrange(stream)
    assert [orjson.loads(fields[b"data"]) for _, fields in entries] == records


def test_maxlen_trims_the_stream_approximately(redis_server) -> None:
    """With MAXLEN ~ 10 a stream fed 1000 records keeps at least 10 and far fewer than 1000."""
    stream = f"offers-{uuid.uuid4().hex}"
    _run(_offers(1000), RedisStreamSink(redis_server.url, stream, maxlen=10))
    length = redis.Redis.from_url(redis_server.url).xlen(stream)
    assert 10 <= length < 1000


def test_sink_waits_for_a_restarted_server_instead_of_dropping(fresh_redis) -> None:
    """A batch written while Redis is down is retried and lands once the server is back."""
    part = RedisStreamSink(fresh_redis.url, "offers", retry_for=20).build("out", 0, 1)
    fresh_redis.kill()
    restart = threading.Timer(0.5, fresh_redis.start)
    restart.start()
    part.write_batch(_offers(3))
    restart.join()
    entries = redis.Redis.from_url(fresh_redis.url).xrange("offers")
    assert [orjson.loads(f[b"data"])["offer_id"] for _, f in entries] == [
        r["offer_id"] for r in _offers(3)
    ]


def test_dedupe_adds_each_offer_id_once_across_a_replayed_batch(redis_server) -> None:
    """With dedupe on, writing a batch again (a resumed epoch) adds no entry twice."""
    stream = f"offers-{uuid.uuid4().hex}"
    sink = RedisStreamSink(redis_server.url, stream, maxlen=1000, dedupe_ttl=3600)
    part = sink.build("out", 0, 1)
    part.write_batch(_offers(30))
    part.write_batch(_offers(45) + [{"reason": "malformed_json", "source": "tx:1"}])
    entries = redis.Redis.from_url(redis_server.url).xrange(stream)
    ids = [orjson.loads(f[b"data"]).get("offer_id") for _, f in entries]
    assert ids == [o["offer_id"] for o in _offers(45)] + [None]


def test_dedupe_survives_a_server_that_lost_its_scripts(redis_server) -> None:
    """After SCRIPT FLUSH (as after a restart or failover) the next batch still lands, once each."""
    stream = f"offers-{uuid.uuid4().hex}"
    part = RedisStreamSink(redis_server.url, stream, dedupe_ttl=3600).build("out", 0, 1)
    part.write_batch(_offers(10))
    redis.Redis.from_url(redis_server.url).script_flush()
    part.write_batch(_offers(25))
    entries = redis.Redis.from_url(redis_server.url).xrange(stream)
    assert [orjson.loads(f[b"data"])["offer_id"] for _, f in entries] == [
        r["offer_id"] for r in _offers(25)
    ]
