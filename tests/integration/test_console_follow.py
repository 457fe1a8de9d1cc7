"""The console follows a growing file, a real Redis Stream and a Kafka topic, from start or now."""

from __future__ import annotations

import threading

import orjson
import pytest
import redis

from keymoment.console import follow
from keymoment.console.follow import FileTail, wait_until
from tests.integration.test_sources_kafka import create_topic, produce


def _rec(i: int) -> bytes:
    return orjson.dumps({"rule_id": "r", "outcome": "sent", "n": i})


def test_a_file_is_followed_as_it_grows_even_a_line_half_written(tmp_path) -> None:
    """Nothing before it exists; a line without its newline waits; a rewritten file restarts."""
    path = tmp_path / "decisions.jsonl"
    tail = FileTail(path, "start")
    assert tail.poll() == []
    path.write_bytes(_rec(1) + b"\n" + _rec(2)[:5])
    assert follow.records(tail.poll()) == [orjson.loads(_rec(1))]
    with path.open("ab") as f:
        f.write(_rec(2)[5:] + b"\n\nnot json\n")
    assert [r["n"] for r in follow.records(tail.poll())] == [2]
    path.write_bytes(_rec(3) + b"\n")
    assert [r["n"] for r in follow.records(tail.poll())] == [3]
    tail.close()


def test_a_file_from_now_skips_what_is_there(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(_rec(1) + b"\n")
    tail = FileTail(path, "now")
    assert tail.poll() == []
    with path.open("ab") as f:
        f.write(_rec(2) + b"\n")
    assert [r["n"] for r in follow.records(tail.poll())] == [2]
    tail.close()


def _follow_in_thread(url: str, start: str) -> tuple[list[dict], threading.Event]:
    got: list[dict] = []
    stop = threading.Event()
    follow.start_thread(url, start, got.extend, stop)
    return got, stop


@pytest.mark.parametrize("start", ["start", "now"])
def test_a_redis_stream_is_followed(redis_server, start) -> None:
    """XADDed records arrive; from now, the ones already in the stream are skipped."""
    client = redis.Redis.from_url(redis_server.url)
    stream = f"decisions-{start}"
    client.xadd(stream, {"data": _rec(1)})
    url = f"{redis_server.url}?stream={stream}"
    follow.check(url)
    got, stop = _follow_in_thread(url, start)
    try:
        client.xadd(stream, {"data": _rec(2)})
        expected = [1, 2] if start == "start" else [2]
        assert wait_until(lambda: [r["n"] for r in got] == expected, 10), got
    finally:
        stop.set()


def test_a_kafka_topic_is_followed(kafka_broker) -> None:
    topic = create_topic(kafka_broker.bootstrap)
    produce(kafka_broker.bootstrap, topic, [_rec(1), b"junk"])
    got, stop = _follow_in_thread(f"kafka://{kafka_broker.bootstrap}/{topic}", "start")
    try:
        produce(kafka_broker.bootstrap, topic, [_rec(2)])
        assert wait_until(lambda: [r["n"] for r in got] == [1, 2], 20), got
    finally:
        stop.set()


def test_an_unusable_url_is_one_line(tmp_path) -> None:
    with pytest.raises(ValueError, match="unsupported source URL"):
        follow.check("ftp://somewhere/x")
