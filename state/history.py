"""Has the cap-store Redis forgotten the contact history? A marker says so (issue 8, section 3).

A Redis without persistence that restarts comes back empty, and caps would
silently count from zero. So the first time a process uses the history it
makes sure a marker `<prefix>:history` (on a Cluster, one per primary node)
holds a random token, and remembers that token. After anything that may be
a restart (a connection error, a timeout, `NOSCRIPT`), the marker is read
again before the next reservation: missing or different means the history
is gone. That fails closed (`HistoryLost`, a `CapStoreUnavailable`, so
nothing is sent unreserved), is counted (`history_lost`) and logged once,
unless the operator said at start that an empty store is expected
(`?allow_empty=1`): then a new token is written (so other processes that
were not told still fail closed) and `history_resets` is counted.

A process restarted by Bytewax recovery gets its token back from the policy
snapshot. A fresh process without one can only accept the store as it finds
it: a store wiped while no process was running is not detected.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from .caps import CapStoreUnavailable

log = logging.getLogger(__name__)


class HistoryLost(CapStoreUnavailable):
    """The cap store came back without the contact history this process was using."""


class HistoryMarker:
    """The marker keys of one store, the token this process expects, and whether to re-read."""

    def __init__(self, store: Any, allow_empty: bool = False) -> None:
        self.store, self.allow_empty = store, allow_empty
        self.token: str | None = None
        self.suspect = True  # read the marker before the next reservation
        self._keys: list[str] | None = None
        self._reported = False
        store.counters.update(history_lost=0, history_resets=0)

    def verify(self) -> None:
        """Raise `HistoryLost` if the store lost the history since this process last saw it."""
        if not self.suspect:
            return
        keys = self.keys()
        tokens = self._read(keys)
        expected = self.token or next((t for t in tokens if t), None)
        if expected is None:  # nothing ever recorded here: this process is the first to use it
            expected = self._claim(keys)
            tokens = self._read(keys)
        if any(t != expected for t in tokens):
            expected = self._lost_or_reset(keys)
        self.token, self.suspect, self._reported = expected, False, False

    def keys(self) -> list[str]:
        """`<prefix>:history`, or on a Cluster one key in a slot of each primary node."""
        if self._keys is None:
            base = f"{self.store.prefix}:history"
            self._keys = self._per_node(base) if self.store.cluster else [base]
        return self._keys

    def _per_node(self, base: str) -> list[str]:
        client = self.store.client
        primaries = {node.name for node in self.store._call(client.get_primaries)}
        keys, owners = [], set()
        for i in range(100_000):
            key = f"{base}:{{n{i}}}"
            owner = client.get_node_from_key(key).name
            if owner not in owners:
                owners.add(owner)
                keys.append(key)
            if owners >= primaries:
                break
        return keys

    def _read(self, keys: list[str]) -> list[str | None]:
        client = self.store.client
        return [self.store._call(lambda k=k: client.get(k)) for k in keys]

    def _claim(self, keys: list[str], overwrite: bool = False) -> str:
        """Write a new token (only where none is, unless `overwrite`); return the one in force.

        The first key decides between processes claiming at once: each writes it, reads
        back the winner and writes that to the other keys, so a race never looks like a
        loss.
        """
        client = self.store.client
        token = secrets.token_hex(8)
        self.store._call(lambda: client.set(keys[0], token, nx=not overwrite))
        winner = self._read(keys[:1])[0] or token
        for key in keys[1:]:
            self.store._call(lambda k=key: client.set(k, winner, nx=not overwrite))
        return winner

    def _lost_or_reset(self, keys: list[str]) -> str:
        if self.allow_empty:
            self.store.counters["history_resets"] += 1
            log.warning("cap store %s: contact history was empty; starting anew", self.store.prefix)
            return self._claim(keys, overwrite=True)
        self.store.counters["history_lost"] += 1
        message = (
            f"cap store (prefix {self.store.prefix!r}) lost its contact history "
            "(the Redis restarted empty?): caps would count from zero, so nothing is sent; "
            "restore the data, or restart with ?allow_empty=1 on the state URL"
        )
        if not self._reported:
            log.error(message)
            self._reported = True
        raise HistoryLost(message)


def token_of(store: object) -> str | None:
    """The history token a store's process has seen (None: a memory store, or not used yet)."""
    marker = getattr(store, "history", None)
    return marker.token if isinstance(marker, HistoryMarker) else None


def expect(store: object, token: str | None) -> None:
    """After a restart from a snapshot: the history must still be the one the snapshot saw."""
    marker = getattr(store, "history", None)
    if isinstance(marker, HistoryMarker) and token is not None:
        marker.token, marker.suspect = token, True
