"""The in-process cap store: the default for backtests, demos and a single live process."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, NamedTuple

from .caps import Option, Reservation, Result, rolling_admits_sorted

SWEEP_EVERY = 4096  # reservations between sweeps of expired keys


class _Key:
    """One key's slots as two parallel lists sorted by `(slot_ms, offer_id)`.

    The slot times are a plain sorted `list[int]`, so a check is two bisects and a
    slice, with no per-check list of times built from `(slot, offer)` pairs. A plain
    class with slots: most reservations create a key, and a dataclass with list
    default factories costs twice as much to build.
    """

    __slots__ = ("times", "offers", "expires_ms")

    def __init__(
        self, times: list[int] | None = None, offers: list[str] | None = None, expires_ms: int = 0
    ) -> None:
        self.times = [] if times is None else times
        self.offers = [] if offers is None else offers
        self.expires_ms = expires_ms

    def add(self, slot_ms: int, offer_id: str) -> None:
        """Insert in `(slot_ms, offer_id)` order, the order `slots()` reports."""
        lo = bisect.bisect_left(self.times, slot_ms)
        hi = bisect.bisect_right(self.times, slot_ms, lo)
        at = bisect.bisect_left(self.offers, offer_id, lo, hi) if hi > lo else lo
        self.times.insert(at, slot_ms)
        self.offers.insert(at, offer_id)

    def prune(self, before_ms: int) -> None:
        cut = bisect.bisect_left(self.times, before_ms)
        if cut:
            del self.times[:cut], self.offers[:cut]


class _One(NamedTuple):
    """A key holding one slot, as most do (with many customers nearly every reservation
    creates its keys): one tuple instead of a `_Key` and its two lists, built and freed
    for about a quarter of the cost and a third of the memory (round 5). It reads like
    a `_Key` (`times`, `offers`, `expires_ms`), so only `_take` tells them apart: a
    second slot turns it into a `_Key`."""

    expires_ms: int
    slot_ms: int
    offer_id: str

    @property
    def times(self) -> list[int]:
        return [self.slot_ms]

    @property
    def offers(self) -> list[str]:
        return [self.offer_id]


_new = tuple.__new__  # a NamedTuple without its generated `__new__` frame (policy/planning.py)


class MemoryCapStore:
    """Same semantics as `RedisCapStore`, with expiry measured on the caller's clock.

    Keys and offer records expire `keep_ms` after the `now_ms` that last
    touched them (a key found expired is dropped when it is next read, and a
    sweep every `SWEEP_EVERY` reservations drops the rest), and old slots are
    pruned on each write, so a long backtest holds only the history its caps can
    still see.

    For incremental snapshots (flows/snapshots.py) the store can say what changed
    since it was last asked (`whole`, then `changes`): from `whole` on, each key and
    offer record it writes is noted as it is written (the entry itself, None for one
    dropped), so a segment holds those and not the whole store, and taking them is
    a swap, not a lookup of each name again. Until `whole` is called nothing is
    kept (a backtest pays nothing for it).
    """

    def __init__(self) -> None:
        self._keys: dict[str, _Key | _One] = {}
        self._offers: dict[str, tuple[str, int, int]] = {}  # offer_id -> (tag, index, expires_ms)
        self._touches = 0
        # the keys and offer records written (the entry) or dropped (None) since
        # `whole`/`changes`; None: not kept
        self._changed: tuple[dict[str, Any], dict[str, Any]] | None = None

    def reserve(self, reservation: Reservation) -> Result:
        now_ms = reservation.now_ms
        self._touches += 1
        if not self._touches % SWEEP_EVERY:
            self.sweep(now_ms)
        known = self._offers.get(reservation.offer_id)
        if known is not None and known[2] > now_ms:
            return Result(known[1], known[0], True)
        refused = []
        for index, option in enumerate(reservation.options):
            refusing = self._first_refusal(option, now_ms)
            if refusing is None:
                self._take(reservation, option)
                expires = now_ms + reservation.keep_ms
                record = self._offers[reservation.offer_id] = (option.tag, index, expires)
                if self._changed is not None:
                    self._changed[1][reservation.offer_id] = record
                return Result(index, option.tag)
            refused.append(refusing)
        return Result(None, None, False, tuple(refused))

    def reserve_many(self, reservations: Sequence[Reservation]) -> list[Result]:
        return [self.reserve(r) for r in reservations]

    def slots(self, key: str) -> list[tuple[str, int]]:
        entry = self._keys.get(key)
        return list(zip(entry.offers, entry.times, strict=True)) if entry else []

    def check(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        self._keys.clear()
        self._offers.clear()

    def snapshot(self) -> dict[str, Any]:
        """Plain data (lists and tuples) for a restart of the process that owns this store.

        The format (per key a list of `(slot_ms, offer_id)` and the expiry) is the one
        earlier versions wrote, so snapshots taken before the parallel lists still load.
        """
        keys = {
            k: (list(zip(v.times, v.offers, strict=True)), v.expires_ms)
            for k, v in self._keys.items()
        }
        return {"keys": keys, "offers": dict(self._offers)}

    def restore(self, snap: dict[str, Any]) -> None:
        self._keys = {k: _restored(slots, exp) for k, (slots, exp) in snap["keys"].items()}
        self._offers = dict(snap["offers"])
        if self._changed is not None:
            self._changed = ({}, {})

    def keep_changes(self) -> None:
        """Note what is written or dropped from now on, for `changes` (a restored chain's)."""
        self._changed = ({}, {})

    def whole(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every key and offer record, as `changes` gives them (the store's own entries:
        encode them at once); changes are kept from now on.

        A snapshot chain's base: each later segment holds only `changes()`.
        """
        self.keep_changes()
        return dict(self._keys), dict(self._offers)

    def changes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The keys and offer records written or dropped since `whole` or the last call
        (None for one dropped), for `apply` after a round trip through the snapshot
        codec, which is the only way they leave the store: the entries are the store's
        own (a `_One` is a tuple, a `_Key` a slotted object the codec encodes), noted
        as they were written, not copied, so they must be encoded before the store
        moves on."""
        changed = self._changed
        if changed is None:
            raise RuntimeError("changes() before whole(): nothing was kept")
        self._changed = ({}, {})
        return changed

    def apply(self, keys: dict[str, Any], offers: dict[str, Any]) -> None:
        """What `whole` or `changes` gave, decoded, onto this store (None drops); the chain's
        restore applies a base and then each part in order. The codec gives a `_One` back
        as a list, a `_Key` as itself."""
        held, records = self._keys, self._offers
        for name, value in keys.items():
            if value is None:
                held.pop(name, None)
            elif type(value) is _Key:
                held[name] = value
            else:
                held[name] = _new(_One, value)
        for offer_id, record in offers.items():
            if record is None:
                records.pop(offer_id, None)
            else:
                records[offer_id] = tuple(record)

    def __len__(self) -> int:
        """Keys plus offer records held: what the expiry tests watch shrink."""
        return len(self._keys) + len(self._offers)

    def _first_refusal(self, option: Option, now_ms: int) -> str | None:
        """The first check that refuses `option`, in one loop: the store's innermost one.

        About five checks per reservation, so the per-check test is written inline
        rather than as a call. A key found expired is dropped here and then admits
        like a missing one (limit > 0); a rolling check with fewer slots near the new
        one than its limit admits without the interval scan.
        """
        keys, slot_ms = self._keys, option.slot_ms
        for check in option.checks:
            entry = keys.get(check.key)
            if entry is not None and entry.expires_ms <= now_ms:
                del keys[check.key]
                entry = None
                if self._changed is not None:
                    self._changed[0][check.key] = None
            if entry is None:
                if check.limit > 0:
                    continue
                return check.cap_id
            times = entry.times
            if check.kind == "calendar":
                start = bisect.bisect_left(times, check.start_ms)
                if bisect.bisect_left(times, check.end_ms, start) - start < check.limit:
                    continue
                return check.cap_id
            window = check.window_ms
            lo = bisect.bisect_right(times, slot_ms - window)
            hi = bisect.bisect_left(times, slot_ms + window, lo)
            if hi - lo < check.limit or rolling_admits_sorted(
                times[lo:hi], slot_ms, window, check.limit
            ):
                continue
            return check.cap_id
        return None

    def _take(self, reservation: Reservation, option: Option) -> None:
        now_ms, offer_id, slot_ms = reservation.now_ms, reservation.offer_id, option.slot_ms
        keys = self._keys
        noted = self._changed[0] if self._changed is not None else None  # `changes`
        for check in option.checks:
            key, expires = check.key, now_ms + check.keep_ms
            entry = keys.get(key)  # `_first_refusal` just dropped it if it had expired
            if entry is None:  # the usual case with many customers: a key of one slot
                keys[key] = one = _new(_One, (expires, slot_ms, offer_id))
                if noted is not None:
                    noted[key] = one
                continue
            if isinstance(entry, _One):  # a second slot: the key becomes a `_Key`
                entry = keys[key] = _Key(entry.times, entry.offers, entry.expires_ms)
            entry.prune(check.prune_before_ms)
            entry.add(slot_ms, offer_id)
            if expires > entry.expires_ms:
                entry.expires_ms = expires
            if noted is not None:
                noted[key] = entry

    def sweep(self, now_ms: int) -> None:
        """Drop every key and offer record whose expiry has passed.

        A full scan; the expired are deleted in place. Until the fourteenth session the
        sweep rebuilt both dicts from what it kept, which cost about twice as much when
        little had expired (a store of 1M keys: 11 against 25-30 us per reservation in
        all) and 10 % more in a steady state (8.8-9.9 against 10.2-11.5 us; /tmp
        micro-benchmark, docs/benchmarks.md). An expiry wheel (each name listed under
        the hour it expires in) was tried in round 4: on the 1M workload its sweeps took
        215-249 ms against 282-287 ms, but the cost is mostly freeing what expired,
        which both do, and listing each new key and offer took back about as much inside
        `reserve` (docs/policy.md).
        """
        keys, offers = self._keys, self._offers
        gone = [k for k, v in keys.items() if v.expires_ms <= now_ms]
        gone_offers = [k for k, v in offers.items() if v[2] <= now_ms]
        for name in gone:
            del keys[name]
        for offer_id in gone_offers:
            del offers[offer_id]
        if self._changed is not None:  # the dropped are changes too
            self._changed[0].update(dict.fromkeys(gone))
            self._changed[1].update(dict.fromkeys(gone_offers))


def _restored(slots: Sequence[tuple[int, str]], expires_ms: int) -> _Key:
    ordered = sorted(slots)
    return _Key([at for at, _ in ordered], [offer for _, offer in ordered], expires_ms)
