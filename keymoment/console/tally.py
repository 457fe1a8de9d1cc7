"""What the console knows: running counts over the streams it follows, safe across threads.

Follower threads add records (`decisions`, `dead_letters`, `audit`,
`conversions`); the web app reads copies. Windows are by `decided_at` (when
the engine decided), in one-minute buckets, so "the last 5 minutes" means
decisions the engine made in the last 5 minutes by the console's clock,
whether the console read them live or from the start of a log. Memory is
bounded for what the page lists: the minute buckets cover an hour, the
recent list and each customer's history are fixed-length, and the customer
index keeps the most recently seen `max_customers`. The uplift's first
exposures (one per campaign and customer, as `report` keeps them) and the
conversion times grow with the customers seen.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

Key = tuple[str, str, str]  # (rule, outcome, channel)
MINUTE = 60
HOUR_MINUTES = 60


def _earlier(text: str, than: str) -> bool:
    """`text` is a time before `than`; a time that does not parse is never earlier."""
    at, other = _epoch(text), _epoch(than)
    return at is not None and (other is None or at < other)


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class Tally:
    """Counts, recent decisions, per-customer history, versions, dead letters, conversions."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        recent: int = 500,
        per_customer: int = 50,
        max_customers: int = 200_000,
    ) -> None:
        self.clock, self.lock = clock, threading.Lock()
        self.started = clock()
        self.total: Counter[Key] = Counter()
        self.minutes: dict[int, Counter[Key]] = {}
        self._minutes_seen: dict[str, int] = {}
        self.recent: deque[dict] = deque(maxlen=recent)
        self.per_customer, self.max_customers = per_customer, max_customers
        self.customers: OrderedDict[str, deque[dict]] = OrderedDict()
        self.versions: Counter[str] = Counter()
        self.first: dict[tuple[str, str], tuple[str, str]] = {}  # (campaign, customer)
        self.dead: Counter[str] = Counter()
        self.audit: deque[dict] = deque(maxlen=200)
        self.conversions: dict[str, list[str]] = {}
        self.malformed = 0

    # -- writers (follower threads) -----------------------------------------------------------

    def decisions(self, records: Iterable[dict]) -> None:
        with self.lock:
            for record in records:
                self._decision(record)

    def _decision(self, r: dict) -> None:
        rule, outcome = r.get("rule_id"), r.get("outcome")
        if not isinstance(rule, str) or not isinstance(outcome, str):
            self.malformed += 1
            return
        key = (rule, outcome, r.get("channel") or "-")
        self.total[key] += 1
        minute = self._minute(r.get("decided_at"))
        if minute is not None:
            bucket = self.minutes.get(minute)
            if bucket is None:
                bucket = self.minutes[minute] = Counter()
                self._prune(minute)
            bucket[key] += 1
        self.recent.append(r)
        self.versions[str(r.get("rule_version", "?"))] += 1
        self._index(r)

    def _minute(self, text: Any) -> int | None:
        """The Unix minute of a log time; UTC `...Z` times are looked up by `YYYY-MM-DDTHH:MM`.

        Decisions arrive many per minute: parsing each one cost a third of the tally's time.
        """
        if isinstance(text, str) and text.endswith("Z") and len(text) >= 17:
            key = text[:16]
            minute = self._minutes_seen.get(key)
            if minute is None:
                at = _epoch(key + "Z")
                if at is None:
                    return None
                if len(self._minutes_seen) > 10_000:
                    self._minutes_seen.clear()
                minute = self._minutes_seen[key] = int(at // MINUTE)
            return minute
        at = _epoch(text)
        return int(at // MINUTE) if at is not None else None

    def _prune(self, newest: int) -> None:
        for minute in [m for m in self.minutes if m <= newest - HOUR_MINUTES - 1]:
            del self.minutes[minute]

    def _index(self, r: dict) -> None:
        customer = r.get("customer_id")
        if not isinstance(customer, str):
            return
        history = self.customers.get(customer)
        if history is None:
            history = self.customers[customer] = deque(maxlen=self.per_customer)
            if len(self.customers) > self.max_customers:
                self.customers.popitem(last=False)
        else:
            self.customers.move_to_end(customer)
        history.append(r)
        campaign, triggered = r.get("campaign_id"), r.get("triggered_at")
        if isinstance(campaign, str) and isinstance(triggered, str):
            key = (campaign, customer)
            seen = self.first.get(key)
            if seen is None or _earlier(triggered, seen[0]):
                self.first[key] = (triggered, r["outcome"])

    def dead_letters(self, records: Iterable[dict]) -> None:
        with self.lock:
            for r in records:
                self.dead[str(r.get("reason", "?"))] += 1

    def audits(self, records: Iterable[dict]) -> None:
        with self.lock:
            self.audit.extend(records)

    def add_conversions(self, records: Iterable[dict]) -> None:
        with self.lock:
            for r in records:
                customer, at = r.get("customer_id"), r.get("occurred_at")
                if r.get("type") == "conversion" and isinstance(customer, str) and at:
                    self.conversions.setdefault(customer, []).append(str(at))

    # -- readers (the web app) ----------------------------------------------------------------

    def counts(self) -> dict[str, Counter[Key]]:
        """Counts per (rule, outcome, channel): last 5 minutes, last hour, since start."""
        now_minute = int(self.clock() // MINUTE)
        with self.lock:
            five, hour = Counter[Key](), Counter[Key]()
            for minute, bucket in self.minutes.items():
                age = now_minute - minute
                if 0 <= age < HOUR_MINUTES:
                    hour.update(bucket)
                    if age < 5:
                        five.update(bucket)
            return {"5m": five, "1h": hour, "all": Counter(self.total)}

    def per_minute(self, minutes: int = HOUR_MINUTES) -> list[tuple[int, int]]:
        """(minute start as Unix time, decisions) for the last `minutes`, oldest first."""
        now_minute = int(self.clock() // MINUTE)
        with self.lock:
            sums = {m: sum(b.values()) for m, b in self.minutes.items()}
        return [
            (m * MINUTE, sums.get(m, 0)) for m in range(now_minute - minutes + 1, now_minute + 1)
        ]

    def latest(self, rule: str = "", outcome: str = "", limit: int = 25) -> list[dict]:
        with self.lock:
            rows = list(self.recent)
        rows.reverse()
        keep = [
            r
            for r in rows
            if (not rule or r.get("rule_id") == rule)
            and (not outcome or r.get("outcome") == outcome)
        ]
        return keep[:limit]

    def customer(self, customer_id: str) -> list[dict]:
        with self.lock:
            return list(self.customers.get(customer_id, ()))

    def snapshot(self) -> dict[str, Any]:
        """The small figures (versions, dead letters, audit, totals) in one consistent copy."""
        with self.lock:
            return {
                "decisions": sum(self.total.values()),
                "versions": Counter(self.versions),
                "dead": Counter(self.dead),
                "audit": list(self.audit),
                "malformed": self.malformed,
                "customers": len(self.customers),
            }

    def exposures(self) -> tuple[dict, dict[str, list[str]]]:
        with self.lock:
            return dict(self.first), {k: list(v) for k, v in self.conversions.items()}
