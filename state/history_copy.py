"""A read-only copy of a Redis cap store's contact history, for a backtest to start from.

`keymoment backtest --history redis://...` replays its events on top of what the
live engine has already reserved: every slot of every sorted set under the prefix
(the caps' `cap:` keys and the human channels' `lead:` capacity keys) and every
offer record (`offer:`), so a candidate the live engine already decided gets the
same answer again (a replay of its offer_id) and a new one counts against what was
really sent. With `lists=1` the suppression sets named by the rules file are copied
too. The copy only reads (TIME, SCAN, ZRANGE, GET, PTTL, SMEMBERS): it never writes,
not even the history marker or the reservation script, so it is safe against the
store a live flow is using.

It is a copy key by key, not a point-in-time snapshot: a reservation the live
engine makes while the copy runs may be seen in some of its keys and not in
others. Expiry: each key's remaining time to live is added to the server's clock
when the copy starts, and the memory store compares that with the replay's clock,
so a replay of past events keeps every copied key for its whole run (it is what
the live store holds now); a key without a time to live never expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from .caps import CapStoreUnavailable
from .memory_caps import MemoryCapStore
from .redis_caps import RedisCapStore

NEVER = 2**62  # the expiry of a key that has no time to live
BATCH = 500  # keys read per round trip


@dataclass
class HistoryCopy:
    """The copied history (`MemoryCapStore.restore`'s format), the copied lists, and counts."""

    snapshot: dict[str, Any]
    lists: dict[str, frozenset[str]] = field(default_factory=dict)
    keys: int = 0  # sorted sets copied
    slots: int = 0  # their members: reservations times the keys each took
    offers: int = 0  # offer records copied
    server_ms: int = 0  # the server's clock when the copy began

    def store(self) -> MemoryCapStore:
        """A new memory store holding the copy: one per replay (`compare` runs two)."""
        store = MemoryCapStore()
        store.restore(self.snapshot)
        return store

    def describe(self, where: str) -> str:
        """One line for the operator: where from and how much."""
        members = sum(len(ids) for ids in self.lists.values())
        lists = f", {len(self.lists)} list(s) with {members} member(s)" if self.lists else ""
        return (
            f"history: copied {self.offers} offer record(s), {self.keys} cap and capacity "
            f"key(s) holding {self.slots} slot(s){lists} from {where}"
        )


def copy_history(source: RedisCapStore, list_names: Sequence[str] = ()) -> HistoryCopy:
    """Read `source`'s prefix into a `HistoryCopy` (raises `CapStoreUnavailable`).

    `list_names` are the suppression lists to copy when `source.lists` is set; without
    it a server holding one of those sets is refused, as the live store refuses it
    (an operator's do-not-contact set must not be ignored in silence).
    """
    copy: HistoryCopy = source._call(lambda: _copy(_nodes(source), source.prefix))
    copy.lists = source._call(lambda: _lists(source, list_names))
    return copy


def _nodes(source: RedisCapStore) -> list[Any]:
    """One plain client per primary of a Cluster (each SCANs and reads its own keys, one
    pipeline per batch: redis-py's Cluster pipeline costs twice the client CPU), else the
    one client. A resharding during the copy makes a node answer MOVED: the copy fails."""
    if not source.cluster:
        return [source.client]
    cluster: Any = source.client
    return [cluster.get_redis_connection(node) for node in cluster.get_primaries()]


def _copy(clients: list[Any], prefix: str) -> HistoryCopy:
    seconds, micros = clients[0].time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    keys: dict[str, tuple[list[tuple[int, str]], int]] = {}
    offers: dict[str, tuple[str, int, int]] = {}
    copy = HistoryCopy({"keys": keys, "offers": offers}, server_ms=now_ms)
    head, literal = len(prefix) + 1, _escaped(prefix)
    for client in clients:
        for kind in ("cap", "lead"):  # the sorted sets: caps, and human channels' capacity
            for name, (reply, ttl) in _read(client, f"{literal}:{kind}:*", "zset", ZRANGE):
                if ttl != -2:  # -2: gone between the scan and the read
                    pairs = _scored(reply)
                    keys[name[head:]] = (pairs, _expiry(now_ms, ttl))
                    copy.slots += len(pairs)
        for name, (record, ttl) in _read(client, f"{literal}:offer:*", "string", GET):
            if record is not None and ttl != -2:  # `offer:{<tag>}:<offer_id>` -> "index|tag"
                index, _, tag = record.partition("|")
                offers[name.rsplit("}:", 1)[1]] = (tag, int(index), _expiry(now_ms, ttl))
    copy.keys, copy.offers = len(keys), len(offers)
    return copy


def _lists(source: RedisCapStore, names: Sequence[str]) -> dict[str, frozenset[str]]:
    """The named sets when the store reads lists from Redis; else none may exist."""
    if not names:
        return {}
    pipe = source.client.pipeline(transaction=False)
    for name in names:
        pipe.smembers(f"{source.prefix}:list:{name}")
    found = dict(zip(names, pipe.execute(), strict=True))
    if source.lists:
        return {name: frozenset(ids) for name, ids in found.items()}
    held = [f"{source.prefix}:list:{name}" for name, ids in found.items() if ids]
    if held:
        raise CapStoreUnavailable(
            f"Redis holds suppression sets ({', '.join(held)}) but the history URL has no "
            "lists=1: add it, so the backtest reads them as the live flow must"
        )
    return {}


def _read(
    client: Any, pattern: str, kind: str, read: bytes
) -> Iterator[tuple[str, tuple[Any, int]]]:
    """(key, (reply to `read`, pttl)) for every key of `kind` matching `pattern`, a batch per
    round trip (`_pipelined`)."""
    for batch in _batches(client.scan_iter(match=pattern, count=1000, _type=kind)):
        bulks = list(map(_bulk, batch))
        replies = _pipelined(client, [part for key in bulks for part in (read % key, PTTL % key)])
        yield from zip(batch, zip(replies[::2], replies[1::2], strict=True), strict=True)


# The two read commands per key as RESP, a key's bulk string in the place of %s: written
# here rather than by redis-py's pipeline, whose packing, parsing and reply callbacks cost
# about 26 us of client CPU per key (a zset's scores come back as floats, formatted).
ZRANGE = b"*5\r\n$6\r\nZRANGE\r\n%s$1\r\n0\r\n$2\r\n-1\r\n$10\r\nWITHSCORES\r\n"
GET = b"*2\r\n$3\r\nGET\r\n%s"
PTTL = b"*2\r\n$4\r\nPTTL\r\n%s"


def _scored(reply: list) -> list[tuple[int, str]]:
    """A ZRANGE WITHSCORES reply as (score, member): RESP3 (redis-py 8's default) gives
    [member, score] pairs with the score a double, RESP2 one flat list of strings."""
    if reply and isinstance(reply[0], list):
        return [(int(score), member) for member, score in reply]
    flat = iter(reply)
    return [(int(float(score)), member) for member, score in zip(flat, flat, strict=True)]


def _bulk(name: str) -> bytes:
    data = name.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _pipelined(client: Any, commands: list[bytes]) -> list[Any]:
    """The replies to `commands` (RESP), sent in one write on one of the client's pooled
    connections and read back in order; a failure drops that connection."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(commands)])
        return [connection.read_response() for _ in commands]
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def _batches(names: Iterable[str]) -> Iterator[list[str]]:
    it = iter(names)
    while batch := list(islice(it, BATCH)):
        yield batch


def _expiry(now_ms: int, ttl_ms: int) -> int:
    return NEVER if ttl_ms < 0 else now_ms + ttl_ms


def _escaped(prefix: str) -> str:
    """`prefix` as a literal in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
