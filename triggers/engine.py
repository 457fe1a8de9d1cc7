"""The trigger engine: per-customer state, the watermark and event-time timers.

Two entry points, shaped for a live dataflow as much as for a replay:

- `step(event, profile)` evaluates one event of one customer;
- `advance(watermark)` moves the engine clock and fires every timer whose
  deadline it reached, in deadline order.

A driver calls `advance(event.occurred_at - allowed_lateness)` before
`step(event)` (`feed` does both), so a timer due at an event's time fires
before that event is evaluated (docs/semantics.md section 2).

Timers live in one heap of `(deadline, customer_id, rule index, key)`;
checking for due timers is a look at the heap's top, whatever the number of
customers. Rules never delete heap entries: a timer whose deadline moved
later is pushed again when its stale entry comes due, and one that was
cancelled is dropped then. Each customer also has one eviction entry at
`last event + horizon` (the longest any rule needs its state), which deletes
its state when nothing newer arrived, so quiet customers hold nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from heapq import heappop, heappush
from typing import Any, NamedTuple

from .base import Step, Trigger
from .candidate import Candidate
from .events import CustomerProfile, Event, is_activity
from .follow_up import FollowUp, SentOffer
from .ruleset import RuleSet
from .salary import SalaryTracker
from .state import CustomerState

EVICT_KEY = ""
# Eviction waits one tick past the horizon: rules whose memory is inclusive
# ("at most 400d", "forgotten after 400d") still see the state of an event
# exactly `horizon` after the customer's last one.
EVICT_SLACK = timedelta(microseconds=1)


class Fed(NamedTuple):
    """What one event produced: timers it made due, then its own candidates."""

    candidates: list[Candidate]
    duplicate: bool


class Engine:
    """Runs one rule set over many customers."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.triggers: list[Trigger] = ruleset.compile()
        self.lateness = ruleset.engine.allowed_lateness
        self.dedupe_window = ruleset.engine.dedupe_window
        self.horizon = max([t.horizon for t in self.triggers] + [self.dedupe_window]) + EVICT_SLACK
        self.evict_index = len(self.triggers)  # sorts after every rule at the same deadline
        self.tracks_activity = any(t.uses_activity for t in self.triggers)
        self.salary = (
            SalaryTracker(ruleset.salary) if any(t.uses_salary for t in self.triggers) else None
        )
        self._dispatch = {
            (kind, active, credit, salary): [
                t
                for t in self.triggers
                if t.wants(kind, active=active, credit=credit, salary=salary)
            ]
            for kind in ("transaction", "app", "conversion")
            for active in (False, True)
            for credit in (False, True)
            for salary in (False, True)
        }
        self.follow_ups = [t for t in self.triggers if isinstance(t, FollowUp)]
        self.customers: dict[str, CustomerState] = {}
        self.watermark: datetime | None = None
        self._heap: list[tuple[datetime, str, int, str]] = []
        self._step = Step(self._schedule)

    # -- the clock ---------------------------------------------------------

    def advance(self, watermark: datetime) -> list[Candidate]:
        """Move the watermark forward (never back) and fire the timers it reached."""
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
        return self._fire_due([])

    def feed(self, event: Event, profile: CustomerProfile | None = None) -> Fed:
        """Advance to this event's watermark, then evaluate it: the replay's whole loop body."""
        at = event.occurred_at
        mark = at - self.lateness if self.lateness else at
        fired: list[Candidate] = []
        if self.watermark is None or mark > self.watermark:
            self.watermark = mark
            heap = self._heap
            if heap and heap[0][0] <= mark:  # the common case, nothing due, costs one look
                self._fire_due(fired)
        own = self.step(event, profile)
        if own is None:
            return Fed(fired, True)
        return Fed(fired + own if fired else own, False)

    def next_deadline(self) -> datetime | None:
        """The earliest heap entry's time (stale entries included): when `advance` may next fire.

        A live driver can sleep until then; an entry that turns out stale
        only costs one early wake-up.
        """
        return self._heap[0][0] if self._heap else None

    def pending_timers(self) -> int:
        """Heap entries, stale ones included: what a due check could ever have to pop."""
        return len(self._heap)

    def _fire_due(self, out: list[Candidate]) -> list[Candidate]:
        heap, watermark = self._heap, self.watermark
        while heap and watermark is not None and heap[0][0] <= watermark:
            deadline, customer_id, index, key = heappop(heap)
            self._due(deadline, customer_id, index, key, out)
        return out

    def _due(self, deadline: datetime, customer_id: str, index: int, key: str, out: list) -> None:
        state = self.customers.get(customer_id)
        if state is None:
            return
        slot = timer_slot(index, key)
        if state.queued.get(slot) == deadline:
            del state.queued[slot]
        evicting = index == self.evict_index
        actual = (
            state.last_seen_at + self.horizon
            if evicting
            else self.triggers[index].deadline(state, key)
        )
        if actual is None:
            return
        if actual > deadline:
            self._schedule(customer_id, state, index, key, actual)
        elif evicting:
            del self.customers[customer_id]
        else:
            step = self._begin(customer_id, state, None, out)
            self.triggers[index].fire(step, key, actual)

    def _schedule(
        self, customer_id: str, state: CustomerState, index: int, key: str, deadline: datetime
    ) -> None:
        """Ensure a heap entry for this timer at or before `deadline` (see module docstring)."""
        slot = (index, key) if key else index  # timer_slot(), inlined on the hot path
        queued = state.queued.get(slot)
        if queued is None or deadline < queued:
            state.queued[slot] = deadline
            heappush(self._heap, (deadline, customer_id, index, key))

    # -- events ------------------------------------------------------------

    def step(self, event: Event, profile: CustomerProfile | None = None) -> list[Candidate] | None:
        """Evaluate one event; None when it repeats an event id inside the dedupe window."""
        customer_id, at = event.customer_id, event.occurred_at
        state = self.customers.get(customer_id)
        if state is not None and event.event_id in state.seen and self._is_duplicate(state, event):
            return None
        out: list[Candidate] = []
        if state is not None and self.lateness:
            state = self._catch_up(customer_id, state, at, out)
        if state is None:
            state = self.customers[customer_id] = CustomerState(at, len(self.triggers))
            self._schedule(customer_id, state, self.evict_index, EVICT_KEY, at + self.horizon)
        self._remember(state, event)
        step = self._begin(customer_id, state, profile, out)
        active = self.tracks_activity and is_activity(event)
        if active:
            step.prev_activity_at = self._record_activity(state, event)
        credit = event.type == "transaction" and event.direction == "credit"  # type: ignore[union-attr]
        if credit and self.salary is not None:
            if state.payers is None:
                state.payers = {}
            step.salary = self.salary.observe(state.payers, event)  # type: ignore[arg-type]
        for trigger in self._dispatch[(event.type, active, credit, step.salary is not None)]:
            trigger.on_event(step, event)
        heap, watermark = self._heap, self.watermark
        if heap and watermark is not None and heap[0][0] <= watermark:
            self._fire_due(out)  # timers a late event armed in the past
        return out

    def feedback(self, offer: SentOffer, profile: CustomerProfile | None = None) -> list[Candidate]:
        """The policy sent `offer`: follow-up rules arm on it (triggers/follow_up.py).

        The driver calls this right after the policy returned the decision, so the
        offer takes the same place in the customer's order in replay and live. A
        customer whose state was already evicted gets no follow-up. Returns the
        candidates of timers that were already due (a deadline at or before the
        watermark), for the driver to decide like any others.
        """
        state = self.customers.get(offer.customer_id) if self.follow_ups else None
        if state is None:
            return []
        out: list[Candidate] = []
        step = self._begin(offer.customer_id, state, profile, out)
        for trigger in self.follow_ups:
            trigger.on_sent(step, offer)
        return self._fire_due(out)

    def _catch_up(
        self, customer_id: str, state: CustomerState, at: datetime, out: list
    ) -> CustomerState | None:
        """Under allowed lateness, do for this customer what the watermark has not done yet.

        The watermark may still be behind this event, but an event of the
        customer at or past a deadline must not cancel or move it, and one
        past the horizon must find the state gone (docs/engine.md): the result
        is then the same whatever the lateness.
        """
        if len(state.queued) > 1:
            self._fire_own_due(customer_id, state, at, out)
        if state.last_seen_at + self.horizon <= at:
            del self.customers[customer_id]
            return None
        return state

    def _fire_own_due(
        self, customer_id: str, state: CustomerState, at: datetime, out: list
    ) -> None:
        """This customer's timers due at or before `at`, fired in deadline order."""
        due = []
        for slot in state.queued:
            index, key = (slot, "") if type(slot) is int else slot
            actual = (
                None if index == self.evict_index else self.triggers[index].deadline(state, key)
            )
            if actual is not None and actual <= at:
                due.append((actual, index, key))
        for actual, index, key in sorted(due):
            self.triggers[index].fire(self._begin(customer_id, state, None, out), key, actual)

    def _begin(
        self, customer_id: str, state: CustomerState, profile: CustomerProfile | None, out: list
    ) -> Step:
        step = self._step
        step.customer_id, step.state, step.profile, step.out = customer_id, state, profile, out
        step.prev_activity_at = None
        step.salary = None
        return step

    def _is_duplicate(self, state: CustomerState, event: Event) -> bool:
        seen_at = state.seen.get(event.event_id)
        return seen_at is not None and abs(event.occurred_at - seen_at) <= self.dedupe_window

    def _remember(self, state: CustomerState, event: Event) -> None:
        """Record the id for dedupe and drop ids that aged out.

        The eviction entry is not touched: when it comes due it re-reads
        `last_seen_at` and moves itself (see the module docstring).
        """
        at, window = event.occurred_at, self.dedupe_window
        newest = at if at > state.last_seen_at else state.last_seen_at
        if window:
            seen = state.seen
            cutoff = newest - window
            if state.last_seen_at < cutoff:
                seen.clear()  # the common case for a customer seen a day or more ago
            else:
                seen.pop(event.event_id, None)
                while seen and (oldest := next(iter(seen))) and seen[oldest] < cutoff:
                    del seen[oldest]
            seen[event.event_id] = at
        state.last_seen_at = newest

    @staticmethod
    def _record_activity(state: CustomerState, event: Event) -> datetime | None:
        previous = state.last_activity_at
        if previous is None or event.occurred_at > previous:
            state.last_activity_at = event.occurred_at
            state.last_activity_id = event.event_id
        return previous

    # -- snapshots ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data for a recovery snapshot: watermark, customer states, timer heap."""
        return {
            "v": 1,
            "watermark": self.watermark,
            "customers": self.customers,
            "heap": self._heap,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Load what `snapshot` returned (from this rule set)."""
        if snapshot.get("v") != 1:
            raise ValueError(f"unknown engine snapshot version {snapshot.get('v')!r}")
        self.watermark = snapshot["watermark"]
        self.customers = snapshot["customers"]
        self._heap = snapshot["heap"]


def timer_slot(index: int, key: str) -> int | tuple[int, str]:
    """The `queued` key of a timer: the bare rule index for keyless timers, saving a tuple each."""
    return (index, key) if key else index


def replay(engine: Engine, events: Iterable[tuple[Event, CustomerProfile | None]]) -> Iterator[Fed]:
    """Feed events in order; what the backtest and the property tests both drive."""
    for event, profile in events:
        yield engine.feed(event, profile)
