"""A per-sink delivery stage: its own threads and bounded backlog, so retries never stall the flow.

Why it exists: delivering inside a dataflow step (the webhook's old
`deliver_batch` in a `flat_map_batch`) made the whole Bytewax worker wait
for the slowest retry of each batch, so one failing gateway held up the
decision log and every other channel (issue 8: 7 offers/s instead of about
1,000). Here each sink has a stage of its own:

- `submit()` never blocks. The offer joins the sink's backlog, which holds
  at most `max_backlog` unsettled offers; when it is full the offer comes
  straight back as a `channel_backlog_full` dead letter. That is the
  explicit choice: blocking would block the Bytewax worker and so every
  channel and the decision log, and an unbounded backlog would grow without
  limit during a gateway outage. The dead letter carries the whole offer,
  so `keymoment redeliver` can still send it before its `expires_at`.
- Up to `max_in_flight` threads take due offers, earliest due first. A
  transient failure (5xx, 408, 429, timeout, network) puts the offer back
  with a due time (exponential backoff with jitter, or the gateway's
  `Retry-After`), so an offer waiting for its retry holds no thread.
- An offer is never sent after its `expires_at`: it is dead-lettered
  `expired_in_delivery` instead (also when its next retry would be late).
- What one caller handed over and is not settled yet lives in that
  caller's `Outbox`; that is what a recovery snapshot must hold, so after
  kill -9 every offer the gateway did not acknowledge is submitted again,
  with the same `offer_id` and so the same `Idempotency-Key`.

Bytewax-free: `keymoment.flows.delivery` adapts it to the dataflow. Time
comes from an injected `clock` (epoch seconds) so tests drive expiry.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger(__name__)
TRANSIENT_STATUSES = frozenset({408, 429})
OFFER_KEYS = ("offer_id", "customer_id", "channel", "campaign_id", "rule_id")


@dataclass(frozen=True)
class Attempt:
    """What one try at sending gave: an HTTP-like status (None: no answer) and any Retry-After."""

    status: int | None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in TRANSIENT_STATUSES


Send = Callable[[dict], Attempt]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n waits uniform(half, all) of `base_delay * 2**(n-1)`, capped at `max_delay`.

    A gateway's `Retry-After` replaces that draw (up to `max_retry_after`):
    the offer waits in the backlog, holding no thread, and expires there if
    the wait would pass its `expires_at`.
    """

    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0
    max_retry_after: float = 3600.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return random.uniform(cap / 2, cap)


class Outbox:
    """Offers one caller handed to a stage, not settled yet, and the dead letters settled so far.

    `unacked()` is what a recovery snapshot holds; `take_dead()` hands the
    dead letters back to the caller's thread (the dataflow's).
    `check_expiry=False` sends offers whatever their `expires_at`: for a
    replay on the event clock, whose offers are all history by the wall clock.
    """

    def __init__(self, check_expiry: bool = True) -> None:
        self.check_expiry = check_expiry
        self._cond = threading.Condition()
        self._pending: dict[str, dict] = {}
        self._dead: list[dict] = []

    def unacked(self) -> list[dict]:
        with self._cond:
            return list(self._pending.values())

    def take_dead(self) -> list[dict]:
        with self._cond:
            dead, self._dead = self._dead, []
            return dead

    def wait(self, timeout: float | None = None) -> bool:
        """Until every offer handed over is settled (True) or `timeout` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def _add(self, offer_id: str, offer: dict) -> bool:
        with self._cond:
            if offer_id in self._pending:
                return False
            self._pending[offer_id] = offer
            return True

    def _settle(self, offer_id: str | None, dead: dict | None) -> None:
        with self._cond:
            if offer_id is not None:
                self._pending.pop(offer_id, None)
            if dead is not None:
                self._dead.append(dead)
            self._cond.notify_all()


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    offer: dict = field(compare=False)
    outbox: Outbox = field(compare=False)
    expires: float | None = field(compare=False)
    attempts: int = field(default=0, compare=False)
    status: int | None = field(default=None, compare=False)


class DeliveryStage:
    """One sink's backlog and threads. Thread-safe; `submit` never blocks the caller."""

    def __init__(
        self,
        send: Send,
        label: str,
        kind: str = "webhook",
        max_in_flight: int = 8,
        max_backlog: int = 10_000,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_in_flight < 1 or max_backlog < 1:
            raise ValueError("max_in_flight and max_backlog must be at least 1")
        self._send, self.label, self.kind = send, label, kind
        self.max_in_flight, self.max_backlog = max_in_flight, max_backlog
        self.retry, self._clock = retry or RetryPolicy(), clock
        self._cond = threading.Condition()
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.backlog = self.peak_backlog = 0
        # Every key from the start: readers on other threads (metrics) iterate it unlocked,
        # which is safe while only values change, never the set of keys.
        reasons = ("rejected", "unavailable", "no_offer_id")
        names = ("delivered", "retries", "channel_backlog_full", "expired_in_delivery")
        self.counts: Counter[str] = Counter(dict.fromkeys(names, 0))
        self.counts.update(dict.fromkeys((f"{kind}_{r}" for r in reasons), 0))

    def submit(self, offer: dict, outbox: Outbox, force: bool = False) -> None:
        """Queue one offer; problems come back as dead letters through `outbox`.

        `force` skips the backlog limit: for offers already admitted once
        (restored from a snapshot) and for a caller that waits anyway.
        """
        offer_id = offer.get("offer_id")
        if not offer_id:  # not an offer: nothing to sign or de-duplicate by
            outbox._settle(None, self._dead(offer, f"{self.kind}_no_offer_id", None, 0))
            return
        offer_id = str(offer_id)
        with self._cond:
            if not force and self.backlog >= self.max_backlog:
                dead = self._dead(offer, "channel_backlog_full", None, 0)
                outbox._settle(None, dead)
                return
            if not outbox._add(offer_id, offer):
                return  # already waiting in this outbox: one delivery covers both
            expires = _expiry(offer) if outbox.check_expiry else None
            self._push(_Job(self._clock(), next(self._seq), offer, outbox, expires))
            self.backlog += 1
            self.peak_backlog = max(self.peak_backlog, self.backlog)
            self._start_threads()

    def next_due(self) -> float | None:
        """When the earliest queued offer is due (clock seconds); None when nothing is queued."""
        with self._cond:
            return self._heap[0].due if self._heap else None

    def wake(self) -> None:
        """Re-read the clock now (for tests that move an injected clock)."""
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the threads; offers still queued stay in their outboxes (and snapshots)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._heap, job)
        self._cond.notify()

    def _start_threads(self) -> None:
        while len(self._threads) < self.max_in_flight and not self._closed:
            name = f"{self.kind}-{len(self._threads)}"
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._run(job)
            except Exception:  # a bug in `send` must not kill the thread and lose the offer
                log.exception("%s: delivery attempt failed unexpectedly", self.label)
                self._reschedule(job, Attempt(None))

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._closed:
                wait = None
                if self._heap:
                    wait = self._heap[0].due - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                self._cond.wait(wait)
            return None

    def _run(self, job: _Job) -> None:
        if job.expires is not None and self._clock() >= job.expires:
            return self._finish(job, "expired_in_delivery")
        job.attempts += 1
        attempt = self._send(job.offer)
        job.status = attempt.status
        if attempt.ok:
            return self._finish(job, None)
        if not attempt.transient:
            return self._finish(job, f"{self.kind}_rejected")
        self._reschedule(job, attempt)

    def _reschedule(self, job: _Job, attempt: Attempt) -> None:
        if job.attempts >= self.retry.max_attempts:
            return self._finish(job, f"{self.kind}_unavailable")
        due = self._clock() + self.retry.delay(job.attempts, attempt.retry_after)
        if job.expires is not None and due >= job.expires:
            return self._finish(job, "expired_in_delivery")  # the retry would be late
        with self._cond:
            self.counts["retries"] += 1
            job.due, job.seq = due, next(self._seq)
            self._push(job)

    def _finish(self, job: _Job, reason: str | None) -> None:
        dead = None if reason is None else self._dead(job.offer, reason, job.status, job.attempts)
        with self._cond:
            self.backlog -= 1
            if reason is None:
                self.counts["delivered"] += 1
        job.outbox._settle(str(job.offer["offer_id"]), dead)

    def _dead(self, offer: dict, reason: str, status: int | None, attempts: int) -> dict:
        """A dead letter that can be re-sent: the whole offer (no amounts or account ids in it)."""
        with self._cond:
            self.counts[reason] += 1
        log.warning(
            "%s: offer %s %s (status %s after %d attempts)",
            self.label,
            offer.get("offer_id"),
            reason,
            status,
            attempts,
        )
        head = {"reason": reason, "source": self.label, "status": status, "attempts": attempts}
        dead = {**head, **{k: offer.get(k) for k in OFFER_KEYS}}
        if offer.get("offer_id"):  # a record that is not an offer is never copied whole
            dead["offer"] = offer
        return dead


def _expiry(offer: dict) -> float | None:
    """`expires_at` as epoch seconds; None (never expires) when absent or unreadable."""
    value = offer.get("expires_at")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def submit_all(stage: DeliveryStage, offers: Iterable[dict], outbox: Outbox) -> None:
    """Hand over offers that were admitted before (a resumed snapshot): no backlog limit."""
    for offer in offers:
        stage.submit(offer, outbox, force=True)
