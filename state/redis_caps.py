"""The shared cap store: one Lua script per reservation, so processes never race past a cap.

Every reservation is one `EVALSHA` of `reserve.lua` (loaded once with
`SCRIPT LOAD`, reloaded on `NOSCRIPT` after a server restart), which checks
every cap of every option and writes in all keys or none. Several
reservations go in one pipeline; Redis runs them one after another in
order, so a batch decides exactly what the same reservations one at a time
would. All keys of one customer share one hash tag (`customer_tag`: the id, or a
digest of an id holding a brace), so the script stays valid on Redis Cluster
(`cluster=True`: the reservations are grouped by the node that owns their
slot, and each group goes to its node as one plain pipeline: `_by_node`).

The client never retries by itself and has short timeouts: an unreachable or
slow server raises `CapStoreUnavailable` at once and the policy parks the
candidates (fail closed). Connection errors and timeouts are counted in
`counters`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

import orjson
import redis

from .caps import CapStoreUnavailable, Check, Reservation, Result, customer_tag
from .history import HistoryMarker
from .redis_base import DEFAULT_TIMEOUT, RedisConnection, redis_client

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMEOUT", "RedisCapStore", "redis_client"]

# A Cluster's answers that the slot map was stale: resent through the Cluster pipeline
REDIRECTS = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
SCRIPT = files(__package__).joinpath("reserve.lua").read_text(encoding="utf-8")
BATCH = 500  # reservations per pipeline round trip


class RedisCapStore(RedisConnection):
    """`CapStore` on Redis 6.2+ sorted sets: member = offer_id, score = slot time in ms."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "km",
        timeout: float = DEFAULT_TIMEOUT,
        client: redis.Redis | None = None,
        lists: bool = False,
        cluster: bool = False,
        allow_empty: bool = False,
    ) -> None:
        super().__init__(url, prefix=prefix, timeout=timeout, client=client, cluster=cluster)
        self.lists = lists  # the suppression lists are Redis sets on this server too
        self.sha: str | None = None
        self.counters.update(round_trips=0, script_loads=0)
        self.history = HistoryMarker(self, allow_empty)  # did the server restart empty?
        self.unread_lists: list[str] = []  # list names the policy reads from files only
        self._sets_checked = False

    def reserve(self, reservation: Reservation) -> Result:
        return self.reserve_many([reservation])[0]

    def reserve_many(self, reservations: Sequence[Reservation]) -> list[Result]:
        results: list[Result] = []
        for start in range(0, len(reservations), BATCH):
            results += self._batch(reservations[start : start + BATCH])
        return results

    def slots(self, key: str) -> list[tuple[str, int]]:
        pairs = self._call(lambda: self.client.zrange(self._key(key), 0, -1, withscores=True))
        return [(member, int(score)) for member, score in pairs]

    def check(self) -> None:
        """PING and load the script, so `run --state redis://...` fails at start, in one line."""
        self._call(self.client.ping)
        if self.sha is None:
            self.sha = self._call(lambda: self.client.script_load(SCRIPT))
            self.counters["script_loads"] += 1

    def _connected(self) -> None:
        if hasattr(self, "history"):  # the first connection may come before __init__ ends
            self.history.suspect = True

    def _call(self, action: Callable[[], Any]) -> Any:
        """As `RedisConnection._call`; any failure may be a restart: re-read the marker next."""
        try:
            return super()._call(action)
        except CapStoreUnavailable:
            self.history.suspect = True
            raise

    def _batch(self, reservations: Sequence[Reservation]) -> list[Result]:
        """One pipeline; a `NOSCRIPT` reloads the script and resends (safe: idempotent by offer).

        The history marker is checked first whenever the server may have restarted.
        """
        if self.unread_lists and not self._sets_checked:
            self._refuse_unread_sets()
        for attempt in range(2):
            self.history.verify()
            replies = self._call(lambda: self._send(reservations))
            self.history.verify()  # it reconnected meanwhile (a restart?): check before use
            if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                break
            self.sha = None
            self.history.suspect = True  # the script cache is gone: a restart (or a flush)
            if attempt:
                raise CapStoreUnavailable("the reservation script could not be loaded")
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:  # OOM, READONLY after a failover...: retry the whole batch later;
            # the reservations in it that did succeed come back as replays of their offer_id
            self.counters["errors"] += 1
            raise CapStoreUnavailable(f"redis refused the reservation: {failed}")
        return [_result(reply) for reply in replies]

    def _refuse_unread_sets(self) -> None:
        """Fail closed while Redis holds a `<prefix>:list:<name>` set that nothing reads.

        Redis-held lists are opt-in (`?lists=1`); an operator who keeps do-not-contact
        sets there and forgot the flag (or upgraded from a version that read them
        always) must get an error, not offers to the customers on them.
        """
        found = [name for name in self.unread_lists if self._exists(f"list:{name}")]
        if found:
            self.counters["unread_lists"] = self.counters.get("unread_lists", 0) + 1
            sets = ", ".join(f"{self.prefix}:list:{n}" for n in found)
            message = (
                f"Redis holds suppression sets ({sets}) but the state URL has no lists=1: "
                "nothing is sent until they are read (add lists=1) or deleted"
            )
            if self.counters["unread_lists"] == 1:
                log.error(message)
            raise CapStoreUnavailable(message)
        self._sets_checked = True

    def _exists(self, key: str) -> bool:
        return bool(self._call(lambda: self.client.exists(self._key(key))))

    def _send(self, reservations: Sequence[Reservation]) -> list[Any]:
        if self.sha is None:
            self.sha = self.client.script_load(SCRIPT)
            self.counters["script_loads"] += 1
        commands = []
        for reservation in reservations:
            keys, args = self._arguments(reservation)
            commands.append(("EVALSHA", self.sha, len(keys), *keys, *args))
        self.counters["round_trips"] += 1
        if not self.cluster:
            return _pipelined(self.client, commands)
        replies = self._by_node(commands)
        moved = [i for i, reply in enumerate(replies) if isinstance(reply, REDIRECTS)]
        if moved:  # again through the Cluster pipeline, which follows redirects
            again = _pipelined(self.client, [commands[i] for i in moved])
            for i, reply in zip(moved, again, strict=True):
                replies[i] = reply
        return replies

    def _by_node(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Cluster: the commands grouped by the node owning their slot, a plain pipeline each.

        redis-py's Cluster pipeline does this in Python per command (a slot, a node
        lookup, a wrapper, the replies put back in order): 138 us of client CPU
        per reservation in calls of 100, against 34 us this way and 30 us on one
        server (bench/bench_redis_scale.py, hiredis). Every key of a reservation shares its slot,
        so the offer key (the first, `command[3]`) names the node. A redirect
        (the slot map is stale: a failover or a resharding) comes back as a
        reply, and the caller sends those commands again through the Cluster
        pipeline, which follows it and refreshes the map: the node refused them
        without running them, and a slot's commands are all redirected together,
        so each customer's reservations keep their order. A node that cannot be
        reached gets its group through the Cluster pipeline too: after a
        failover it finds the new primary, else it raises as before (a timeout
        may have run some of them: a resend is a replay, idempotent by offer).
        """
        cluster: Any = self.client  # a RedisCluster (`cluster=True`)
        groups: dict[str, tuple[Any, list[int]]] = {}
        for i, command in enumerate(commands):
            node = cluster.get_node_from_key(command[3])
            groups.setdefault(node.name, (node, []))[1].append(i)
        replies: list[Any] = [None] * len(commands)
        for node, indexes in groups.values():
            group = [commands[i] for i in indexes]
            try:
                answers = _pipelined(cluster.get_redis_connection(node), group)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                answers = _pipelined(cluster, group)  # it refreshes the map (failover), or raises
            for i, answer in zip(indexes, answers, strict=True):
                replies[i] = answer
        return replies

    def _arguments(self, r: Reservation) -> tuple[list[str], list[Any]]:
        """KEYS (each cap key once) and one JSON argument: few arguments pack fast."""
        keys = [self._key(f"offer:{customer_tag(r.customer_id)}:{r.offer_id}")]
        index: dict[str, int] = {}
        options = []
        for option in r.options:
            checks = []
            for check in option.checks:
                if check.key not in index:
                    keys.append(self._key(check.key))
                    index[check.key] = len(keys)  # Lua tables count from 1
                checks.append(_check_args(index[check.key], check, option.slot_ms))
            options.append([option.tag, str(option.slot_ms), checks])
        return keys, [orjson.dumps([r.offer_id, max(r.keep_ms, 1), options])]

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"


def _pipelined(client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """One round trip (per node, on a Cluster client); errors come back as replies.

    `execute_command`, not `pipe.evalsha`: a Cluster pipeline blocks that name.
    """
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


def _check_args(key_index: int, check: Check, slot_ms: int) -> list[Any]:
    keep, prune = max(check.keep_ms, 1), f"({check.prune_before_ms}"
    if check.kind == "calendar":
        return [
            key_index,
            check.cap_id,
            "c",
            check.limit,
            str(check.start_ms),
            f"({check.end_ms}",
            keep,
            prune,
        ]
    lo, hi = f"({slot_ms - check.window_ms}", f"({slot_ms + check.window_ms}"
    return [key_index, check.cap_id, "r", check.limit, lo, hi, keep, prune, check.window_ms]


def _result(reply: list[Any]) -> Result:
    if int(reply[0]) == 1:
        return Result(index=int(reply[1]), tag=str(reply[2]), replayed=bool(int(reply[3])))
    return Result(index=None, refused=tuple(reply[1]))
