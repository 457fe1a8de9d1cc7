"""Suppression lists kept as Redis sets (live mode): `SADD km:list:<name> <customer_id>`.

Membership is read on every decision (`SMISMEMBER`, one command per list for
a whole batch), so a change made by an operator takes effect on the next
batch without a restart. Connection trouble raises `CapStoreUnavailable`,
because an unknown suppression status must not lead to a contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .redis_base import RedisConnection


class RedisListStore(RedisConnection):
    """Reads (and, for operators and tests, writes) named customer-id sets."""

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

    def _key(self, name: str) -> str:
        return f"{self.prefix}:list:{name}"
