"""Redis Streams as a resumable Bytewax source (XREAD, no consumer group) and as a sink (XADD).

Source: one partition per stream key. Each entry's field `data` holds the
wire JSON; the source emits `(position, payload)` with position
`stream:id` (for example `tx:1700000000000-0`). The partition snapshot is
the id of the last entry emitted, so Bytewax recovery resumes right after
it. Consumer groups are deliberately not used: an XACK cannot be tied to a
Bytewax epoch, so acknowledged-but-unsnapshotted entries would be lost on a
crash (upstream issue 229). An entry without a `data` field is emitted
with an empty payload, which the decoder turns into a `malformed_json`
dead letter carrying the position.

Reads never block the worker: a non-blocking XREAD of up to `batch_size`
entries, then, when the stream is drained, a short `next_awake` pause
(`poll_interval`) instead of a sleep, so epochs keep closing. A lost
connection is retried with exponential backoff capped at 0.5 s (below any
snapshot interval) and logged once per outage; the position is kept, so
nothing is skipped or repeated.

Sink: XADD of `data` = the record as JSON, with an optional approximate
MAXLEN; one pipeline round trip per batch. Bytewax replays the last epoch
after a crash, so by default the sink skips a record whose `offer_id` it
already wrote within `dedupe_ttl` (7 days): a marker key per offer_id, set
atomically with the XADD by one Lua script, so a repeat adds nothing even
when the crash falls between two records. That makes offers effectively
once on the stream (measured: 0 repeats over 10 kill -9s, against N without
it; docs/connectors.md). `dedupe_ttl=None` (URL `dedupe=0`) is the plain
at-least-once XADD. Single-node Redis: the marker and the stream may hash
to different cluster slots.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

log = logging.getLogger(__name__)
Item = tuple[str, bytes]
MAX_BACKOFF = 5.0  # sink retries
MAX_NAP = 0.5  # source backoff cap: a sleeping partition holds back every epoch
DEDUPE_TTL = 7 * 24 * 3600  # sink: how long an offer_id written is remembered (s)
LOST = (redis.ConnectionError, redis.TimeoutError)


def connect(url: str) -> Any:
    """A client with short timeouts: a dead server must not freeze the worker for long.

    Typed `Any`: redis-py's reply types are unions of every RESP shape.
    """
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def resolve_start(client: Any, stream: str, start: str) -> str:
    """`0` reads the whole stream; `$` means after the current last entry, fixed now as an id."""
    if start != "$":
        return start
    last = client.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"


class _StreamPartition(StatefulSourcePartition[Item, str]):
    """Reads on a connection of its own, XREAD's reply as hiredis parses it.

    redis-py's XREAD reply callback builds a dict and a tuple per entry, and its
    client picks a pooled connection per call: 3.7 us per entry at COUNT 1000
    and about 95 us per call, against 1.5 us and 37 us this way (measured on
    one core, a private redis-server; docs/connectors.md). Live, where each
    call returns what arrived since the last, the per-call cost counts too.
    """

    def __init__(
        self, url: str, stream: str, last_id: str, batch_size: int, poll_interval: float, tail: bool
    ):
        self._client = connect(url)
        self._conn = self._client.connection_pool.get_connection()
        self._stream, self._last_id = stream, last_id
        self._batch, self._poll, self._tail = batch_size, poll_interval, tail
        self._awake: datetime | None = None
        self._failures = 0
        self._lost: str | None = None  # why reads fail, while they do (`lost`)
        self._asked = False  # an XREAD sent whose reply is not read yet

    def next_batch(self) -> list[Item]:
        try:
            if not self._asked:
                self._ask()
            self._asked = False
            reply = self._conn.read_response()
        except LOST as exc:
            self._conn.disconnect()  # the next call reconnects
            return self._back_off(exc)
        self._recovered()
        entries = _entries(reply)
        if not entries:
            if not self._tail:
                raise StopIteration
            self._awake = datetime.now(UTC) + timedelta(seconds=self._poll)
            return []
        self._awake = None
        self._last_id = entries[-1][0].decode()
        if len(entries) == self._batch:
            self._ask_ahead()
        prefix = self._stream
        return [(f"{prefix}:{eid.decode()}", _data(fields)) for eid, fields in entries]

    def _ask(self) -> None:
        self._conn.send_command(
            "XREAD", "COUNT", self._batch, "STREAMS", self._stream, self._last_id
        )
        self._asked = True

    def _ask_ahead(self) -> None:
        """A full batch means more is waiting: ask for it now, read the reply on the next call.

        The server then works while the flow processes this batch, instead of
        the worker waiting for it in the next call (on shared cores, for the
        server to be scheduled). Only after a full batch: a reply fixed now
        would miss what arrives while this batch is processed, a delay when
        the flow keeps up. The position stays the last entry emitted.
        """
        try:
            self._ask()
        except LOST:
            self._asked = False
            self._conn.disconnect()  # the next call reconnects and asks again

    def _back_off(self, exc: Exception) -> list[Item]:
        if self._failures == 0:
            log.warning(
                "redis stream %s unreachable (%s); retrying", self._stream, type(exc).__name__
            )
            self._lost = f"unreachable ({type(exc).__name__}), retrying"
        self._failures += 1
        delay = min(0.05 * 2 ** min(self._failures, 10), MAX_NAP)
        self._awake = datetime.now(UTC) + timedelta(seconds=delay)
        return []

    def _recovered(self) -> None:
        if self._failures:
            log.warning("redis stream %s reachable again", self._stream)
            self._failures, self._lost = 0, None

    def lost(self) -> str | None:
        """Why the server cannot be read now, or None: `/readyz` asks (flows/instrument.py),
        from the listener's thread (one attribute read)."""
        return self._lost

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str:
        return self._last_id

    def close(self) -> None:
        self._conn.disconnect()
        self._client.close()


def _entries(reply: Any) -> list:
    """XREAD's entries of its one stream: a map under RESP3 (redis-py 8 on Redis 6 or later),
    a list of [stream, entries] pairs under RESP2, nothing when none are new."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return next(iter(reply.values()))
    return reply[0][1]


def _data(fields: list[bytes]) -> bytes:
    """The `data` field of an entry's flat [name, value, ...] list; empty when it has none."""
    if fields[:1] == [b"data"]:
        return fields[1]
    names = fields[::2]
    return fields[2 * names.index(b"data") + 1] if b"data" in names else b""


class RedisStreamSource(FixedPartitionedSource[Item, str]):
    """Stream keys as partitions, read with XREAD from `start` (`0`: all, `$`: only new)."""

    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        start: str = "0",
        batch_size: int = 1000,
        poll_interval: float = 0.005,
        tail: bool = True,
    ):
        if not streams:
            raise ValueError("redis source needs at least one stream")
        self.url, self.streams, self.start = url, list(streams), start
        self.batch_size, self.poll_interval, self.tail = batch_size, poll_interval, tail

    def list_parts(self) -> list[str]:
        return list(self.streams)

    def build_part(self, step_id: str, for_part: str, resume_state: str | None):
        last_id = resume_state
        if last_id is None:
            with connect(self.url) as client:
                last_id = resolve_start(client, for_part, self.start)
        return _StreamPartition(
            self.url, for_part, last_id, self.batch_size, self.poll_interval, self.tail
        )


# XADD only if this offer_id was not added within the TTL: one round trip, atomic.
_ADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  if ARGV[3] ~= '' then
    return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[1])
  end
  return redis.call('XADD', KEYS[1], '*', 'data', ARGV[1])
end
return false
"""


class _StreamSinkPartition(StatelessSinkPartition[dict]):
    """One pipelined write per batch on a connection of its own, the commands packed by hiredis.

    redis-py's pipeline and `Script` objects cost 20-30 us per record in Python
    (and a SCRIPT EXISTS round trip per batch); this way 5-8 us (measured,
    docs/connectors.md). The script is loaded once per connection and again
    when the server answers NOSCRIPT (a restart, a failover, SCRIPT FLUSH):
    a batch written again then adds nothing twice, the marker sees to that.
    """

    def __init__(
        self, url: str, stream: str, maxlen: int | None, retry_for: float, dedupe_ttl: int | None
    ):
        self._client = connect(url)
        self._conn = self._client.connection_pool.get_connection()
        self._stream, self._maxlen, self._retry_for = stream, maxlen, retry_for
        self._dedupe_ttl = dedupe_ttl
        self._sha = hashlib.sha1(_ADD_ONCE.encode()).hexdigest()
        self._loaded = False
        trim = ("MAXLEN", "~", maxlen) if maxlen else ()
        self._plain = ("XADD", stream, *trim, "*", "data")

    def write_batch(self, items: list[dict]) -> None:
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                return self._xadd(items)
            except LOST:
                self._conn.disconnect()  # replies of the lost batch are not read
                self._loaded = False
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("redis sink %s unreachable; retrying in %.2fs", self._stream, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _xadd(self, items: list[dict]) -> None:
        commands = [self._command(item) for item in items]
        try:
            self._send(commands)
        except redis.exceptions.NoScriptError:
            self._loaded = False
            self._send(commands)

    def _command(self, item: dict) -> tuple:
        offer_id = item.get("offer_id") if self._dedupe_ttl else None
        if not offer_id:
            return (*self._plain, orjson.dumps(item))
        seen = f"{self._stream}:seen:{offer_id}"
        args = (orjson.dumps(item), self._dedupe_ttl, self._maxlen or "")
        return ("EVALSHA", self._sha, 2, self._stream, seen, *args)

    def _send(self, commands: list[tuple]) -> None:
        """All commands in one write, then every reply read before the first error is raised."""
        conn = self._conn
        if not self._loaded and any(c[0] == "EVALSHA" for c in commands):
            conn.send_command("SCRIPT", "LOAD", _ADD_ONCE)
            conn.read_response()
            self._loaded = True
        conn.send_packed_command(conn.pack_commands(commands))
        error = None
        for _ in commands:
            try:
                conn.read_response()
            except redis.ResponseError as exc:
                error = error or exc
        if error is not None:
            raise error

    def close(self) -> None:
        self._conn.disconnect()
        self._client.close()


class RedisStreamSink(DynamicSink[dict]):
    """XADD each record as JSON in field `data`; waits up to `retry_for` s for a lost server.

    With `dedupe_ttl` (seconds; the default is 7 days, None turns it off), a
    record whose `offer_id` was already added within that time is dropped
    (a marker key `<stream>:seen:<offer_id>`), so the epoch Bytewax replays
    after a crash adds nothing twice.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        maxlen: int | None = None,
        retry_for: float = 30.0,
        dedupe_ttl: int | None = DEDUPE_TTL,
    ):
        self.url, self.stream, self.maxlen, self.retry_for = url, stream, maxlen, retry_for
        self.dedupe_ttl = dedupe_ttl

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StreamSinkPartition:
        return _StreamSinkPartition(
            self.url, self.stream, self.maxlen, self.retry_for, self.dedupe_ttl
        )
