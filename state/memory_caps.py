"""The in-process cap store: the default for backtests, demos and a single live process."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .caps import Check, Option, Reservation, Result, rolling_admits

SWEEP_EVERY = 4096  # reservations between sweeps of expired keys


@dataclass(slots=True)
class _Key:
    """A sorted list of `(slot_ms, offer_id)` and when the whole key may be dropped."""

    slots: list[tuple[int, str]] = field(default_factory=list)
    expires_ms: int = 0


class MemoryCapStore:
    """Same semantics as `RedisCapStore`, with expiry measured on the caller's clock.

    Keys and offer records expire `keep_ms` after the `now_ms` that last
    touched them, and old slots are pruned on each touch, so a long backtest
    holds only the history its caps can still see.
    """

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._offers: dict[str, tuple[str, int, int]] = {}  # offer_id -> (tag, index, expires_ms)
        self._touches = 0

    def reserve(self, reservation: Reservation) -> Result:
        self._maybe_sweep(reservation.now_ms)
        known = self._offers.get(reservation.offer_id)
        if known is not None and known[2] > reservation.now_ms:
            return Result(index=known[1], tag=known[0], replayed=True)
        refused = []
        for index, option in enumerate(reservation.options):
            refusing = self._first_refusal(option, reservation.now_ms)
            if refusing is None:
                self._take(reservation, option)
                expires = reservation.now_ms + reservation.keep_ms
                self._offers[reservation.offer_id] = (option.tag, index, expires)
                return Result(index=index, tag=option.tag)
            refused.append(refusing)
        return Result(index=None, refused=tuple(refused))

    def reserve_many(self, reservations: Sequence[Reservation]) -> list[Result]:
        return [self.reserve(r) for r in reservations]

    def slots(self, key: str) -> list[tuple[str, int]]:
        entry = self._keys.get(key)
        return [(offer, at) for at, offer in entry.slots] if entry else []

    def check(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        self._keys.clear()
        self._offers.clear()

    def snapshot(self) -> dict[str, Any]:
        """Plain data (lists and tuples) for a restart of the process that owns this store."""
        keys = {k: (list(v.slots), v.expires_ms) for k, v in self._keys.items()}
        return {"keys": keys, "offers": dict(self._offers)}

    def restore(self, snap: dict[str, Any]) -> None:
        self._keys = {k: _Key(list(slots), exp) for k, (slots, exp) in snap["keys"].items()}
        self._offers = dict(snap["offers"])

    def __len__(self) -> int:
        """Keys plus offer records held: what the expiry tests watch shrink."""
        return len(self._keys) + len(self._offers)

    def _first_refusal(self, option: Option, now_ms: int) -> str | None:
        for check in option.checks:
            if not self._admits(check, option.slot_ms, now_ms):
                return check.cap_id
        return None

    def _admits(self, check: Check, slot_ms: int, now_ms: int) -> bool:
        entry = self._live(check.key, now_ms)
        times = [at for at, _ in entry.slots] if entry else []
        if check.kind == "calendar":
            count = bisect.bisect_left(times, check.end_ms) - bisect.bisect_left(
                times, check.start_ms
            )
            return count < check.limit
        return rolling_admits(times, slot_ms, check.window_ms, check.limit)

    def _take(self, reservation: Reservation, option: Option) -> None:
        for check in option.checks:
            entry = self._live(check.key, reservation.now_ms) or self._keys.setdefault(
                check.key, _Key()
            )
            cut = bisect.bisect_left(entry.slots, (check.prune_before_ms, ""))
            del entry.slots[:cut]
            bisect.insort(entry.slots, (option.slot_ms, reservation.offer_id))
            entry.expires_ms = max(entry.expires_ms, reservation.now_ms + check.keep_ms)

    def _live(self, key: str, now_ms: int) -> _Key | None:
        entry = self._keys.get(key)
        if entry is not None and entry.expires_ms <= now_ms:
            del self._keys[key]
            return None
        return entry

    def _maybe_sweep(self, now_ms: int) -> None:
        self._touches += 1
        if self._touches % SWEEP_EVERY:
            return
        self.sweep(now_ms)

    def sweep(self, now_ms: int) -> None:
        """Drop every key and offer record whose expiry has passed."""
        self._keys = {k: v for k, v in self._keys.items() if v.expires_ms > now_ms}
        self._offers = {k: v for k, v in self._offers.items() if v[2] > now_ms}
