"""What the engine remembers per customer: `CustomerState`, holding one `RuleState` per rule.

Words used across triggers/: the *customer state* is everything kept for
one customer (dedupe ids, the activity clock, salary series, timer
bookkeeping); a *rule state* is the part one rule keeps for that customer,
an instance of the small class its trigger module defines (`WindowState`,
`AbsenceState`, ...), or None while the rule has nothing to remember.

Plain slotted objects holding only what the active rules need; every field
that a rule set does not use stays None, so a customer costs what its rules
cost. They pickle as tuples of their slot values (smaller and faster than
the default slot dict) for recovery snapshots; `engine.SNAPSHOT_VERSION`
changes whenever a layout here or in a rule state changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .salary import Payer

# The key of a timer in `CustomerState.queued`: the rule index alone for
# keyless timers (saving a tuple each), else (rule index, key).
TimerSlot = int | tuple[int, str]
# `CustomerState.seen` and `.queued` take three shapes, for memory: None, the one
# (key, value) pair of the common case, or a dict. A pair costs 56 bytes where a
# dict of one entry costs 184 (issue 13: under 1 KB per customer). `seen` has a
# fourth, its commonest: the bare id of an event at `last_seen_at`, which costs nothing.
Seen = str | tuple[str, datetime] | dict[str, datetime] | None
Queued = tuple[TimerSlot, datetime] | dict[TimerSlot, datetime] | None


class Slotted:
    """Pickles as the tuple of its slot values: what recovery snapshots hold, many times over."""

    __slots__ = ()

    def __getstate__(self) -> tuple[Any, ...]:
        names: tuple[str, ...] = self.__slots__  # the subclass's own slots
        return tuple(getattr(self, name) for name in names)

    def __setstate__(self, values: tuple[Any, ...]) -> None:
        names: tuple[str, ...] = self.__slots__
        for name, value in zip(names, values, strict=True):
            setattr(self, name, value)


class RuleState(Slotted):
    """Base of the per-rule state classes; each trigger module defines its own."""

    __slots__ = ()


class CustomerState(Slotted):
    """Everything the engine remembers about one customer."""

    __slots__ = (
        "last_seen_at",
        "first_seen_at",
        "last_activity_at",
        "last_activity_id",
        "seen",
        "rule_states",
        "payers",
        "queued",
    )

    def __init__(self, first_seen_at: datetime, rule_count: int) -> None:
        self.last_seen_at = first_seen_at  # newest occurred_at of this customer
        self.first_seen_at = first_seen_at  # onboarding start when reference data has none
        self.last_activity_at: datetime | None = None  # newest customer-initiated activity
        self.last_activity_id = ""  # the last activity at that time: what arms dormancy
        # Event ids inside the dedupe window: None, the bare id of the common case (one event
        # at `last_seen_at`: a customer's previous event is usually a day or more old), an
        # (id, time) pair, or a dict.
        self.seen: Seen = None
        # One entry per rule, in rule-file order, owned by that rule's trigger: a `RuleState`
        # or None (typed Any so `Trigger.state_of` needs no runtime cast).
        self.rule_states: list[Any] = [None] * rule_count
        self.payers: dict[str, Payer] | None = None  # salary tracking, keyed by counterparty
        # The earliest heap entry of each armed rule timer (`Queued`; the eviction entry,
        # always in the heap, is not kept here).
        self.queued: Queued = None

    def queue(self, slot: TimerSlot, deadline: datetime) -> bool:
        """Record `deadline` as this timer's earliest heap entry, unless one at or before it is.

        True when recorded: the engine then pushes the entry. One call per arming
        (a salary re-armed every month, dormancy after each quiet period).
        """
        queued = self.queued
        if queued is None:
            self.queued = (slot, deadline)
        elif isinstance(queued, dict):
            earliest = queued.get(slot)
            if earliest is not None and deadline >= earliest:
                return False
            queued[slot] = deadline
        elif queued[0] == slot:
            if deadline >= queued[1]:
                return False
            self.queued = (slot, deadline)
        else:
            self.queued = {queued[0]: queued[1], slot: deadline}
        return True

    def unqueue(self, slot: TimerSlot, deadline: datetime) -> None:
        """The heap entry (slot, deadline) was popped: forget it if it is the one recorded."""
        queued = self.queued
        if isinstance(queued, dict):
            if queued.get(slot) == deadline:
                del queued[slot]
                if not queued:
                    self.queued = None
        elif queued is not None and queued[0] == slot and queued[1] == deadline:
            self.queued = None

    def requeue(self, slot: TimerSlot, deadline: datetime, due: datetime) -> bool:
        """The heap entry (slot, deadline) popped, and the timer is due later now, at `due`.

        `unqueue` then `queue` in one call, for the commonest pop (dormancy after
        more activity, a salary re-armed): True when the engine must push `due`.
        """
        queued = self.queued
        if isinstance(queued, dict):
            if queued.get(slot) == deadline:  # the recorded entry: it moves
                if len(queued) > 1:
                    queued[slot] = due
                else:
                    self.queued = (slot, due)  # as `unqueue` and `queue` leave it
                return True
        elif queued is not None and queued[0] == slot and queued[1] == deadline:
            self.queued = (slot, due)
            return True
        return self.queue(slot, due)  # a stale entry: `unqueue` would do nothing

    def queued_items(self) -> list[tuple[TimerSlot, datetime]]:
        queued = self.queued
        if isinstance(queued, dict):
            return list(queued.items())
        return [] if queued is None else [queued]
