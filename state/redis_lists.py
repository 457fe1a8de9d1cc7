"""Suppression lists kept as Redis sets (live mode): `SADD km:list:<name> <customer_id>`.

Membership is read on every decision (`SMISMEMBER`, one command per list for
a whole batch), so a change made by an operator takes effect on the next
batch without a restart. Connection trouble raises `CapStoreUnavailable`,
because an unknown suppression status must not lead to a contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from .caps import CapStoreUnavailable
from .redis_caps import DEFAULT_TIMEOUT, redis_client


class RedisListStore:
    """Reads (and, for operators and tests, writes) named customer-id sets."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "km",
        timeout: float = DEFAULT_TIMEOUT,
        client: redis.Redis | None = None,
    ) -> None:
        self.prefix = prefix
        self.client = client or redis_client(url, timeout)
        self.counters = {"connection_errors": 0, "timeouts": 0, "errors": 0}

    def members(self, names: Sequence[str], customer_ids: Sequence[str]) -> dict[str, set[str]]:
        """For each list name, which of `customer_ids` it holds; one round trip in all."""
        if not names or not customer_ids:
            return {name: set() for name in names}
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.smismember(self._key(name), list(customer_ids))
        replies = self._call(pipe.execute)
        return {
            name: {cid for cid, hit in zip(customer_ids, flags, strict=True) if int(hit)}
            for name, flags in zip(names, replies, strict=True)
        }

    def add(self, name: str, customer_ids: Iterable[str]) -> None:
        ids = list(customer_ids)
        if ids:
            self._call(lambda: self.client.sadd(self._key(name), *ids))

    def remove(self, name: str, customer_ids: Iterable[str]) -> None:
        ids = list(customer_ids)
        if ids:
            self._call(lambda: self.client.srem(self._key(name), *ids))

    def close(self) -> None:
        self.client.close()

    def _key(self, name: str) -> str:
        return f"{self.prefix}:list:{name}"

    def _call(self, action):  # type: ignore[no-untyped-def]
        try:
            return action()
        except redis.exceptions.TimeoutError as exc:
            self.counters["timeouts"] += 1
            raise CapStoreUnavailable(f"redis timed out: {exc}") from None
        except redis.exceptions.ConnectionError as exc:
            self.counters["connection_errors"] += 1
            raise CapStoreUnavailable(f"redis unreachable: {exc}") from None
        except redis.exceptions.RedisError as exc:
            self.counters["errors"] += 1
            raise CapStoreUnavailable(f"redis error: {exc}") from None
