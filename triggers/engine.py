"""The trigger engine: per-customer state, the watermark and event-time timers.

Three entry points, shaped for a live dataflow as much as for a replay:

- `feed(event, profile)` moves the watermark to the event's
  (`occurred_at - allowed_lateness`), firing the timers it reached, then
  evaluates the event, so a timer due at an event's time fires before that
  event is evaluated (docs/semantics.md section 2);
- `evaluate(event, profile)` evaluates one event without moving the
  watermark, for a driver that moves it itself (a live shard batching
  events under one watermark);
- `advance(watermark)` moves the engine clock and fires every timer whose
  deadline it reached, in deadline order.

Timers live in one heap of `(deadline, customer_id, rule index, key)`;
checking for due timers is a look at the heap's top, whatever the number of
customers. Rules never delete heap entries: a timer whose deadline moved
later is pushed again when its stale entry comes due, and one that was
cancelled is dropped then. Each customer also has one eviction check at
`last event + horizon` (the longest any rule needs its state), which deletes
its state when nothing newer arrived, so quiet customers hold nothing; the
checks wait by the hour and enter the heap when their hour begins
(triggers/evictions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from heapq import heapify, heappop, heappush
from typing import Any, NamedTuple, get_args

from .base import RuleContext, Trigger
from .candidate import Candidate
from .events import (
    ACTIVITY_ACTIONS,
    DEFAULT_INITIATOR,
    TRANSACTION_KINDS,
    Action,
    AppEvent,
    CustomerProfile,
    Event,
    TransactionEvent,
)
from .evictions import HOUR, MARKER, Evictions
from .follow_up import FollowUp, SentOffer
from .ruleset import RuleSet
from .salary import SalaryTracker
from .state import CustomerState

# Eviction waits one tick past the horizon: rules whose memory is inclusive
# ("at most 400d", "forgotten after 400d") still see the state of an event
# exactly `horizon` after the customer's last one.
EVICT_SLACK = timedelta(microseconds=1)
# 2: rule states became typed classes (`RuleState`), `CustomerState.rules` `rule_states`.
# 3: `CustomerState.seen` and `.queued` are None, one pair or a dict, and the eviction
#    entry is no longer in `queued` (triggers/state.py).
# 4: eviction checks wait by the hour (`Evictions`), `seen` may be a bare id.
SNAPSHOT_VERSION = 4
# The index of a deferred switch's marker in the heap (`Deferred`): it sorts before every rule
# and before an hour's eviction marker at the same instant.
LAG = -1


class Fed(NamedTuple):
    """What one event produced: timers it made due, then its own candidates."""

    candidates: list[Candidate]
    duplicate: bool


class Deferred:
    """A rules switch that each customer meets on its first touch (`switch.switched`).

    A switch that re-reads every state used to reshape every customer and rebuild
    the heap in the shard's call (4.8 CPU s at 1M customers, every event waiting).
    Here a customer is reshaped (`adapt`) only when something first reads it: its
    next event or sent offer, an incremental snapshot holding it, or the time its
    new timers might come due. That time is known without reading the state: no
    deadline of the new rules is more than `lag` earlier than the old one (a
    shortened timer, a shorter horizon), so every timer and eviction check of a
    customer comes due no earlier than its entry in the old heap minus `lag`. The
    old heap (`old._heap`, with `old._evictions` behind its hour markers) is kept
    as it was and never fired: one marker in the engine's heap at its top minus
    `lag` reshapes the customers of its next hour and pushes their real entries,
    before the watermark can reach any of them, so timers fire at the same
    watermark and in the same order as after a full pass.
    """

    __slots__ = ("old", "adapt", "stale", "lag", "carry", "reset_salary")

    def __init__(
        self,
        old: Engine,
        adapt: Callable[[CustomerState], None],
        stale: set[str],
        lag: timedelta,
        carry: dict[int, int],
        reset_salary: bool,
    ) -> None:
        self.old, self.adapt, self.stale, self.lag = old, adapt, stale, lag
        self.carry, self.reset_salary = carry, reset_salary  # for a whole snapshot

    def plain(self) -> dict[str, Any]:
        """What a whole snapshot keeps of it; `switch.resumed` makes it again."""
        return {
            "rules": self.old.ruleset,
            "carry": self.carry,
            "reset_salary": self.reset_salary,
            "stale": self.stale,
            "lag": self.lag,
            "heap": self.old._heap,
            "evictions": self.old._evictions.hours,
        }


class Engine:
    """Runs one rule set over many customers."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.triggers: list[Trigger[Any]] = ruleset.compile()
        self.lateness = ruleset.engine.allowed_lateness
        self.dedupe_window = ruleset.engine.dedupe_window
        self.horizon = max([t.horizon for t in self.triggers] + [self.dedupe_window]) + EVICT_SLACK
        self.evict_index = len(self.triggers)  # sorts after every rule at the same deadline
        self.tracks_activity = any(t.uses_activity for t in self.triggers)
        # Whether `evaluate` needs the event's customer profile at all: a driver that knows
        # it does not skips the lookup (a cache miss or two in a dict of every customer).
        self.reads_profiles = any(t.reads_profile for t in self.triggers)
        self.salary = (
            SalaryTracker(ruleset.salary) if any(t.uses_salary for t in self.triggers) else None
        )
        self.dispatch()
        self.follow_ups = [t for t in self.triggers if isinstance(t, FollowUp)]
        self._catch_up = bool(self.lateness)  # `_advance_customer` per event: lateness or lagging
        self._lagging = False
        self.customers: dict[str, CustomerState] = {}
        # Customers whose state changed since the last incremental snapshot (triggers/snapshots.py);
        # None when nothing takes them (a replay): the set would grow to every customer held.
        self.dirty: set[str] | None = set()
        self.watermark: datetime | None = None
        self._heap: list[tuple[datetime, str, int, str]] = []
        # False only while nothing in the heap is due at the watermark, the state every engine
        # call leaves; set when an entry may be (a timer armed in the past, a rebuilt heap),
        # so `evaluate` looks at the heap only then, not after every event.
        self._due_now = True
        self._evictions = Evictions(self.evict_index)
        self._deferred: Deferred | None = None  # a switch some customers have not met yet
        self._context = RuleContext(self._schedule)

    def dispatch(self) -> None:
        """(Re)build the tables of which `on_event`s `evaluate` calls, from the triggers' flags.

        A transaction's kind, an app event's action, or a conversion -> flags (1
        activity, 2 credit, 4 salary reading) -> the `on_event`s, in rule-file order.
        """
        self._by_kind = {kind: self._calls("transaction", kind) for kind in TRANSACTION_KINDS}
        self._by_action = {action: self._calls("app", action) for action in get_args(Action)}
        self._conversions = self._calls("conversion", "")

    def _calls(self, event_type: str, subtype: str) -> list[list[Callable[..., None]]]:
        """The dispatch of one event type and kind or action, by flags (see `dispatch`)."""
        return [
            [
                t.on_event
                for t in self.triggers
                if t.wants(
                    event_type, subtype, active=bool(f & 1), credit=bool(f & 2), salary=bool(f & 4)
                )
            ]
            for f in range(8)
        ]

    @property
    def lagging(self) -> bool:
        """Set by a driver whose watermark may lag a customer's own stream (several input
        partitions, docs/engine.md): each event first fires its customer's due timers."""
        return self._lagging

    @lagging.setter
    def lagging(self, value: bool) -> None:
        self._lagging = value
        self._catch_up = bool(self.lateness) or value

    # -- the clock ---------------------------------------------------------

    def advance(self, watermark: datetime) -> list[Candidate]:
        """Move the watermark forward (never back) and fire the timers it reached."""
        current = self.watermark
        if current is None or watermark > current:
            self.watermark = current = watermark
        heap = self._heap
        if heap and heap[0][0] <= current:  # called per watermark rise: one look when idle
            return self._fire_due([])
        return []

    def move_if_idle(self, watermark: datetime) -> bool:
        """`advance(watermark)` when no timer is due by it (True); else nothing moves (False).

        A replay's step at each watermark rise (flows/shard.py), about one per two events:
        when something is due, the driver first fires it at the earlier rises where it
        came due, then calls `advance`. One call where `next_deadline` and `advance` were two.
        """
        heap = self._heap
        if heap and heap[0][0] <= watermark:
            return False
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
        return True

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
        own = self.evaluate(event, profile)
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
        deferred = len(self._deferred.old._heap) if self._deferred is not None else 0
        return len(self._heap) + deferred

    def _fire_due(self, out: list[Candidate]) -> list[Candidate]:
        heap, watermark = self._heap, self.watermark
        while heap and watermark is not None and heap[0][0] <= watermark:
            deadline, customer_id, index, key = heappop(heap)
            self._due(deadline, customer_id, index, key, out)
        self._due_now = False
        return out

    def _due(
        self, deadline: datetime, customer_id: str, index: int, key: str, out: list[Candidate]
    ) -> None:
        customer = self.customers.get(customer_id)
        if customer is None:
            if customer_id != MARKER:
                return
            if index == LAG:  # customers of a deferred switch whose timers may come due
                self._meet_due(deadline)
            else:  # an hour of eviction checks begins
                self._enter_hour(deadline)
            return
        if self.dirty is not None:
            self.dirty.add(customer_id)
        if index == self.evict_index:
            actual = customer.last_seen_at + self.horizon
            if actual > deadline:  # the customer saw events since: check again later
                self._evictions.add(self._heap, customer_id, actual, self.watermark)
            else:
                del self.customers[customer_id]
            return
        slot = (index, key) if key else index  # its `TimerSlot`: bare index when keyless
        trigger = self.triggers[index]
        due = trigger.deadline(customer, key)
        if due is not None and due > deadline:  # the commonest pop: dormancy, a salary re-armed
            if customer.requeue(slot, deadline, due):
                heappush(self._heap, (due, customer_id, index, key))
            return
        customer.unqueue(slot, deadline)
        if due is not None:
            trigger.fire(self._begin(customer_id, customer, None, out), key, due)

    def _enter_hour(self, hour: datetime) -> None:
        """The eviction checks of the hour starting at `hour`, at their deadlines now."""
        customers, horizon, watermark = self.customers, self.horizon, self.watermark
        for customer_id in self._evictions.take(hour):
            customer = customers.get(customer_id)
            if customer is not None:
                deadline = customer.last_seen_at + horizon
                self._evictions.add(self._heap, customer_id, deadline, watermark)

    # -- a deferred switch (`Deferred`) ------------------------------------

    def defer(self, deferred: Deferred) -> None:
        """Run on `deferred.old`'s customers, each reshaped when first read (`Deferred`)."""
        self._deferred = deferred
        self._lag_marker(deferred)
        self._due_now = True

    def _lag_marker(self, deferred: Deferred) -> None:
        heap = deferred.old._heap
        if heap:
            heappush(self._heap, (heap[0][0] - deferred.lag, MARKER, LAG, ""))

    def _meet_due(self, at: datetime) -> None:
        """The lag marker popped: reshape the customers the old heap holds up to an hour on."""
        deferred = self._deferred
        if deferred is None:
            return  # every customer met the switch already
        heap, stale, evictions = deferred.old._heap, deferred.stale, deferred.old._evictions
        limit = at + deferred.lag + HOUR
        while heap and heap[0][0] < limit:
            deadline, customer_id, index, _ = heappop(heap)
            if customer_id != MARKER:
                ids = [customer_id]
            else:  # an old hour of eviction checks (a lag marker of an earlier switch: none)
                ids = evictions.take(deadline) if index != LAG else []
            for cid in ids:
                if cid in stale:
                    self._meet(cid, self.customers[cid])
            if self._deferred is None:
                return
        self._lag_marker(deferred)

    def _met(self, customer_id: str, customer: CustomerState) -> None:
        """Reshape the customer for the switch, unless it met it already (`Deferred`)."""
        deferred = self._deferred
        if deferred is not None and customer_id in deferred.stale:
            self._meet(customer_id, customer)

    def _meet(self, customer_id: str, customer: CustomerState) -> None:
        """What the full pass did for one customer: its state reshaped, its timers queued."""
        deferred = self._deferred
        assert deferred is not None
        deferred.stale.discard(customer_id)
        deferred.adapt(customer)
        heap = self._heap
        for slot, deadline in customer.queued_items():
            index, key = (slot, "") if isinstance(slot, int) else slot
            heappush(heap, (deadline, customer_id, index, key))
        self._evictions.add(heap, customer_id, customer.last_seen_at + self.horizon, self.watermark)
        self._due_now = True
        if not deferred.stale:
            self._deferred = None  # the old heap goes; lag markers left are no-ops

    def settle(self, customer_ids: Iterable[str]) -> None:
        """These customers in the rules in force (a part of them is about to be written)."""
        deferred = self._deferred
        if deferred is not None:
            for customer_id in deferred.stale.intersection(customer_ids):
                self._meet(customer_id, self.customers[customer_id])

    def settle_all(self) -> None:
        """Every customer in the rules in force: a base from memory, the next switch."""
        deferred = self._deferred
        if deferred is not None:
            self.settle(list(deferred.stale))

    def rebuild_timers(self) -> None:
        """The heap and the eviction hours from the customer states alone (restore, switch).

        One entry per queued timer (its `queued` deadline) and one eviction check
        per customer: what the heap would hold but for stale entries, which are
        no-ops when they come due.
        """
        self._heap, self._evictions = [], Evictions(self.evict_index)
        heap, horizon, watermark = self._heap, self.horizon, self.watermark
        for customer_id, customer in self.customers.items():
            for slot, deadline in customer.queued_items():
                index, key = (slot, "") if isinstance(slot, int) else slot
                heap.append((deadline, customer_id, index, key))
        heapify(heap)
        for customer_id, customer in self.customers.items():
            self._evictions.add(heap, customer_id, customer.last_seen_at + horizon, watermark)
        self._due_now = True

    def _schedule(
        self, customer_id: str, customer: CustomerState, index: int, key: str, deadline: datetime
    ) -> None:
        """Ensure a heap entry for this timer at or before `deadline` (see module docstring)."""
        if customer.queue((index, key) if key else index, deadline):  # its `TimerSlot`
            heappush(self._heap, (deadline, customer_id, index, key))
            if self.watermark is not None and deadline <= self.watermark:
                self._due_now = True  # armed in the past (a late event): fired at once

    # -- events ------------------------------------------------------------

    def evaluate(
        self, event: Event, profile: CustomerProfile | None = None
    ) -> list[Candidate] | None:
        """Evaluate one event; None when it repeats an event id inside the dedupe window.

        `profile` may be None whatever the reference data when `reads_profiles` is False.
        The hot path of every run: the id memory's common cases and the
        activity clock are written out here rather than called (each call
        costs about as much as the work it would do).
        """
        customer_id, at, event_id = event.customer_id, event.occurred_at, event.event_id
        customer = self.customers.get(customer_id)
        window = self.dedupe_window
        out: list[Candidate] = []
        fresh = True  # no id kept can repeat: each is of an event at or before `last_seen_at`
        if customer is not None:
            fresh = at - window > customer.last_seen_at  # most events: the previous is older
            if self._deferred is not None:  # a rules switch it may not have met yet
                self._met(customer_id, customer)
            if not fresh and self._repeats(customer, event_id, at):
                return None
            if self._catch_up:
                customer = self._advance_customer(customer_id, customer, at, out)
        if self.dirty is not None:
            self.dirty.add(customer_id)
        if customer is None:
            customer = self.customers[customer_id] = CustomerState(at, len(self.triggers))
            if window:
                customer.seen = event_id  # `_remember` of a new state: the bare id
            if self._evictions.add(self._heap, customer_id, at + self.horizon, self.watermark):
                self._due_now = True  # a first event more than the horizon late
        elif fresh:  # `_remember`'s common case: nothing else is left in the window
            customer.last_seen_at = at
            if window:
                customer.seen = event_id
        elif window:
            self._remember(customer, event_id, at)
        # The dispatch index: 1 activity (`events.is_activity`, written out here; a test
        # checks the two agree for every kind, initiator and action), 2 credit, 4 salary.
        flags, reading, previous = 0, None, None
        if type(event) is TransactionEvent:
            by_flags = self._by_kind[event.kind]
            if self.tracks_activity and (
                event.initiated_by == "customer"
                if event.initiated_by is not None
                else event.kind not in DEFAULT_INITIATOR
            ):
                flags = 1
            if event.direction == "credit":
                flags |= 2
                if self.salary is not None:
                    if customer.payers is None:
                        customer.payers = {}
                    reading = self.salary.observe(customer.payers, event)
                    if reading is not None:
                        flags |= 4
        elif type(event) is AppEvent:
            by_flags = self._by_action[event.action]
            if self.tracks_activity and event.action in ACTIVITY_ACTIONS:
                flags = 1
        else:
            by_flags = self._conversions
        if flags & 1:  # the activity clock; the last activity at a tie takes over (issue 8)
            previous = customer.last_activity_at
            if previous is None or at >= previous:
                customer.last_activity_at, customer.last_activity_id = at, event_id
        calls = by_flags[flags]
        if calls:  # many events reach no trigger (a third on four_rules.yaml): no context then
            ctx = self._context
            ctx.customer_id = customer_id
            ctx.customer = customer
            ctx.profile = profile
            ctx.out = out
            ctx.prev_activity_at = previous
            ctx.salary = reading
            for on_event in calls:
                on_event(ctx, event)
        if self._due_now:
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
        customer = self.customers.get(offer.customer_id) if self.follow_ups else None
        if customer is None:
            return []
        out: list[Candidate] = []
        if self.dirty is not None:
            self.dirty.add(offer.customer_id)
        if self._deferred is not None:
            self._met(offer.customer_id, customer)
        ctx = self._begin(offer.customer_id, customer, profile, out)
        for trigger in self.follow_ups:
            trigger.on_sent(ctx, offer)
        return self._fire_due(out)

    def _advance_customer(
        self, customer_id: str, customer: CustomerState, at: datetime, out: list[Candidate]
    ) -> CustomerState | None:
        """Under allowed lateness, move this one customer's clock to its own event at `at`.

        The watermark may still be behind this event, but an event of the
        customer at or past a deadline must not cancel or move it, and one
        past the horizon must find the state gone (docs/engine.md): the result
        is then the same whatever the lateness. Fires the customer's own due
        timers; returns None when its state is gone.
        """
        queued = customer.queued  # an entry is never later than its timer's deadline, so
        if queued is not None and (  # nothing is due while the earliest entry is after `at`
            queued[1] <= at if isinstance(queued, tuple) else min(queued.values()) <= at
        ):
            self._fire_own_due(customer_id, customer, at, out)
        if customer.last_seen_at + self.horizon <= at:
            del self.customers[customer_id]
            return None
        return customer

    def _fire_own_due(
        self, customer_id: str, customer: CustomerState, at: datetime, out: list[Candidate]
    ) -> None:
        """This customer's timers due at or before `at`, fired in deadline order."""
        due = []
        for slot, _ in customer.queued_items():
            index, key = (slot, "") if isinstance(slot, int) else slot
            actual = self.triggers[index].deadline(customer, key)
            if actual is not None and actual <= at:
                due.append((actual, index, key))
        for actual, index, key in sorted(due):
            self.triggers[index].fire(self._begin(customer_id, customer, None, out), key, actual)

    def _begin(
        self,
        customer_id: str,
        customer: CustomerState,
        profile: CustomerProfile | None,
        out: list[Candidate],
    ) -> RuleContext:
        ctx = self._context
        ctx.customer_id, ctx.customer, ctx.profile, ctx.out = customer_id, customer, profile, out
        ctx.prev_activity_at = None
        ctx.salary = None
        return ctx

    def _repeats(self, customer: CustomerState, event_id: str, at: datetime) -> bool:
        """Whether `event_id` was seen for this customer within the dedupe window."""
        seen = customer.seen
        if type(seen) is dict:  # the shapes of `CustomerState.seen`, the live one first
            seen_at = seen.get(event_id)
            return seen_at is not None and abs(at - seen_at) <= self.dedupe_window
        if seen is None:
            return False
        if isinstance(seen, str):
            seen_at = customer.last_seen_at if seen == event_id else None
        elif isinstance(seen, tuple):
            seen_at = seen[1] if seen[0] == event_id else None
        else:
            seen_at = seen.get(event_id)
        return seen_at is not None and abs(at - seen_at) <= self.dedupe_window

    def _remember(self, customer: CustomerState, event_id: str, at: datetime) -> None:
        """Record the id for dedupe and drop ids that aged out (`CustomerState.seen`).

        The eviction entry is not touched: when it comes due it re-reads
        `last_seen_at` and moves itself (see the module docstring).
        """
        last = customer.last_seen_at
        newest = at if at > last else last
        cutoff = newest - self.dedupe_window
        seen = customer.seen
        customer.last_seen_at = newest
        if type(seen) is dict and last >= cutoff:  # a live burst: ids kept, some may age out
            seen.pop(event_id, None)
            while seen and (oldest := next(iter(seen))) and seen[oldest] < cutoff:
                del seen[oldest]
            seen[event_id] = at
            return
        if isinstance(seen, str):
            seen = (seen, last)  # a bare id is the id of the event at `last_seen_at`
        if isinstance(seen, tuple) and (seen[0] == event_id or seen[1] < cutoff):
            seen = None  # the one id kept is this one, or aged out
        if seen is None or last < cutoff:
            customer.seen = event_id if at == newest else (event_id, at)  # nothing else kept
        elif isinstance(seen, tuple):
            customer.seen = {seen[0]: seen[1], event_id: at}
        else:
            seen.pop(event_id, None)
            while seen and (oldest := next(iter(seen))) and seen[oldest] < cutoff:
                del seen[oldest]
            seen[event_id] = at

    # -- snapshots ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data for a recovery snapshot: watermark, customer states, timers."""
        return {
            "v": SNAPSHOT_VERSION,
            "watermark": self.watermark,
            "customers": self.customers,
            "heap": self._heap,
            "evictions": self._evictions.hours,
            "deferred": self._deferred.plain() if self._deferred is not None else None,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Load what `snapshot` returned (from this rule set)."""
        if snapshot.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown engine snapshot version {snapshot.get('v')!r}")
        self.watermark = snapshot["watermark"]
        self.customers = snapshot["customers"]
        self._heap = snapshot["heap"]
        self._due_now = True
        self._evictions = Evictions(self.evict_index)
        self._evictions.hours = snapshot["evictions"]
        self._deferred = None
        if snapshot.get("deferred") is not None:
            from .switch import resumed  # switch.py builds on this module

            self._deferred = resumed(self, snapshot["deferred"])
