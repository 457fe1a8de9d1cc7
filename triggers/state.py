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
        self.seen: dict[str, datetime] = {}  # event ids inside the dedupe window
        # One entry per rule, in rule-file order, owned by that rule's trigger.
        self.rule_states: list[RuleState | None] = [None] * rule_count
        self.payers: dict[str, Payer] | None = None  # salary tracking, keyed by counterparty
        self.queued: dict[TimerSlot, datetime] = {}  # earliest heap entry per timer
