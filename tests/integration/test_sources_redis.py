"""Redis Streams source on a real redis-server: positions, resume from the stream id, outages."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from keymoment.connectors.files import JsonlFileSink
from keymoment.connectors.redis_streams import RedisStreamSource
from keymoment.flows.outputs import output


def _add(client: redis.Redis, stream: str, start: int, n: int) -> list[str]:
    pipe = client.pipeline()
    for i in range(start, start + n):
        pipe.xadd(stream, {"data": orjson.dumps({"event_id": f"{stream}-{i}"})})
    return [eid.decode() for eid in pipe.execute()]


def _collect(source: RedisStreamSource, db: Path | None = None) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    flow = Dataflow("redis-in")
    op.output("out", op.input("in", flow, source), TestingSink(got))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=db and RecoveryConfig(db))
    return got


@pytest.fixture
def client(redis_server) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_each_stream_is_a_partition_and_positions_are_stream_ids(client, redis_server) -> None:
    """Every entry of two streams comes out once as (`stream:id`, data); no `data` -> empty;
    `data` after another field is still found."""
    tx, app = f"tx-{uuid.uuid4().hex}", f"app-{uuid.uuid4().hex}"
    tx_ids, app_ids = _add(client, tx, 0, 2500), _add(client, app, 0, 3)
    odd = client.xadd(app, {"other": b"1"}).decode()
    late = client.xadd(app, {"other": b"2", "data": b"{}"}).decode()
    got = _collect(RedisStreamSource(redis_server.url, [tx, app], batch_size=100, tail=False))
    assert [p for p, _ in got if p.startswith(tx)] == [f"{tx}:{i}" for i in tx_ids]
    assert [p for p, _ in got if p.startswith(app)] == [f"{app}:{i}" for i in [*app_ids, odd, late]]
    assert dict(got)[f"{tx}:{tx_ids[7]}"] == orjson.dumps({"event_id": f"{tx}-7"})
    assert dict(got)[f"{app}:{odd}"] == b""
    assert dict(got)[f"{app}:{late}"] == b"{}"


def test_recovery_resumes_after_the_snapshotted_stream_id(client, redis_server, tmp_path) -> None:
    """A second run on the same recovery store reads only entries added after the first run."""
    stream, db = f"tx-{uuid.uuid4().hex}", tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    _add(client, stream, 0, 40)
    source = RedisStreamSource(redis_server.url, [stream], batch_size=7, tail=False)
    assert len(_collect(source, db)) == 40
    later = _add(client, stream, 40, 5)
    assert [p for p, _ in _collect(source, db)] == [f"{stream}:{i}" for i in later]


class _CrashOnce:
    def __init__(self, at: int, flag: Path):
        self.at, self.flag, self.seen = at, flag, 0

    def __call__(self, item: tuple[str, bytes]) -> dict:
        self.seen += 1
        if self.seen == self.at and not self.flag.exists():
            self.flag.touch()
            raise RuntimeError("injected crash")
        return orjson.loads(item[1])


def test_crash_mid_stream_then_resume_gives_each_entry_once(client, redis_server, tmp_path) -> None:
    """Crashed mid-stream and resumed, the flow writes every entry to the file sink exactly once."""
    stream, db, out = f"tx-{uuid.uuid4().hex}", tmp_path / "db", tmp_path / "out.jsonl"
    db.mkdir()
    init_db_dir(db, 1)
    _add(client, stream, 0, 300)

    def flow() -> Dataflow:
        f = Dataflow("redis-crash")
        items = op.input("in", f, RedisStreamSource(redis_server.url, [stream], 9, tail=False))
        parsed = op.map("parse", items, _CrashOnce(200, tmp_path / "flag"))
        output("out", parsed, JsonlFileSink(out))
        return f

    with pytest.raises(Exception, match="mapper"):
        run_main(flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    run_main(flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    ids = [orjson.loads(line)["event_id"] for line in out.read_bytes().splitlines()]
    assert ids == [f"{stream}-{i}" for i in range(300)]


def test_start_dollar_skips_entries_already_in_the_stream(client, redis_server) -> None:
    """`start=$` fixes the position at the current last entry: only later entries are read."""
    stream = f"tx-{uuid.uuid4().hex}"
    _add(client, stream, 0, 5)
    source = RedisStreamSource(redis_server.url, [stream], start="$", tail=False)
    part = source.build_part("in", stream, None)
    later = _add(client, stream, 5, 2)
    assert [p for p, _ in part.next_batch()] == [f"{stream}:{i}" for i in later]


def test_server_outage_pauses_the_partition_without_losing_its_place(fresh_redis) -> None:
    """While Redis is down the partition returns empty batches; after a restart it reads on."""
    client = redis.Redis.from_url(fresh_redis.url)
    first = _add(client, "tx", 0, 3)
    part = RedisStreamSource(fresh_redis.url, ["tx"]).build_part("in", "tx", None)
    assert [p for p, _ in part.next_batch()] == [f"tx:{i}" for i in first]
    fresh_redis.kill()
    assert part.next_batch() == [] and part.next_awake() is not None
    assert part.snapshot() == first[-1]
    fresh_redis.start()
    later = _add(redis.Redis.from_url(fresh_redis.url), "tx", 3, 2)
    deadline = time.monotonic() + 10
    got: list = []
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
        got = part.next_batch()
    assert [p for p, _ in got] == [f"tx:{i}" for i in later]
