"""Contact-history stores: caps in memory or in Redis, and suppression lists in Redis.

`cap_store_from_url(None | "memory:" | "redis://host:port/0[?timeout=0.25&prefix=km]")`
is what the commands call with their `--state` flag.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from .caps import (
    CapStore,
    CapStoreUnavailable,
    Check,
    Option,
    Reservation,
    Result,
    cap_key,
    rolling_admits,
)
from .memory_caps import MemoryCapStore

__all__ = [
    "CapStore",
    "CapStoreUnavailable",
    "Check",
    "MemoryCapStore",
    "Option",
    "Reservation",
    "Result",
    "cap_key",
    "cap_store_from_url",
    "rolling_admits",
]


def cap_store_from_url(url: str | None) -> CapStore:
    """`None` or `memory:` -> `MemoryCapStore`; `redis://`/`rediss://` -> `RedisCapStore`.

    Query options `timeout` (seconds), `prefix` (key namespace) and `lists=1`
    (suppression lists are also Redis sets on this server) are taken off the URL;
    the rest goes to redis-py. Raises ValueError for any other scheme.
    """
    if url is None or url in ("memory", "memory:", "memory://"):
        return MemoryCapStore()
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported state URL {url!r}: expected memory: or redis://host:port/0")
    from .redis_caps import DEFAULT_TIMEOUT, RedisCapStore

    query = parse_qs(parts.query)
    timeout = float(query.pop("timeout", [DEFAULT_TIMEOUT])[0])
    prefix = query.pop("prefix", ["km"])[0]
    lists = _flag(query.pop("lists", ["0"])[0], "lists")
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    plain = urlunsplit(parts._replace(query=rest))
    return RedisCapStore(plain, prefix=prefix, timeout=timeout, lists=lists)


def _flag(value: str, name: str) -> bool:
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError(f"{name}={value!r}: expected 1 or 0")
    return value in ("1", "true", "yes")
