"""What every Redis-backed part of `keymoment.state` shares: the client and its error handling.

Both the cap store and the suppression-list store fail fast (short timeouts, no
retries behind the caller's back) and turn any connection trouble into
`CapStoreUnavailable`, counted in `counters`, so the policy can fail closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .caps import CapStoreUnavailable

DEFAULT_TIMEOUT = 0.25  # seconds: slower than this counts as unavailable


def redis_client(
    url: str,
    timeout: float = DEFAULT_TIMEOUT,
    cluster: bool = False,
    on_connect: Callable[[], None] | None = None,
) -> Any:
    """A client that fails fast and never retries behind the caller's back.

    `cluster`: a Redis Cluster client (`url` names any one node; the others are
    discovered), which sends each key's commands to the node owning its slot.
    `on_connect` runs after every new connection: redis-py reconnects silently
    when the server closed the old one, and a restarted server is exactly that.
    """
    options: dict[str, Any] = dict(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    if cluster:  # the cluster client runs its own handshake, then ours
        hook = (lambda _conn: on_connect()) if on_connect else None
        return RedisCluster.from_url(url, redis_connect_func=hook, **options)

    def handshake(conn: Any) -> None:  # replaces the default handshake, so do it first
        conn.on_connect()
        if on_connect is not None:
            on_connect()

    return redis.Redis.from_url(
        url, retry_on_timeout=False, redis_connect_func=handshake, **options
    )


class RedisConnection:
    """A fail-fast client (given or made from `url`), a key prefix and error counters."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "km",
        timeout: float = DEFAULT_TIMEOUT,
        client: redis.Redis | None = None,
        cluster: bool = False,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix {prefix!r}: no braces (they would become the hash tag)")
        self.url = url
        self.prefix = prefix
        self.cluster = cluster
        self.client = client or redis_client(url, timeout, cluster, self._connected)
        self.counters = {"connection_errors": 0, "timeouts": 0, "errors": 0}

    def close(self) -> None:
        self.client.close()

    def _connected(self) -> None:
        """A new connection to the server (the first, or after it closed the last one)."""

    def _call(self, action: Callable[[], Any]) -> Any:
        """Run one Redis call, turning connection trouble into `CapStoreUnavailable`."""
        try:
            return action()
        except redis.exceptions.TimeoutError as exc:
            self.counters["timeouts"] += 1
            raise CapStoreUnavailable(f"redis timed out: {exc}") from None
        except redis.exceptions.ConnectionError as exc:
            self.counters["connection_errors"] += 1
            raise CapStoreUnavailable(f"redis unreachable: {exc}") from None
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            self.counters["errors"] += 1
            raise CapStoreUnavailable(f"redis error: {exc}") from None
