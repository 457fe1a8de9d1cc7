"""`absence`: "A not followed by B within a duration" (section 3, item 8)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .base import RuleBase, Step, Trigger
from .durations import Duration, format_duration
from .events import Event
from .filters import EventFilter

if TYPE_CHECKING:
    from .ruleset import RuleSet
    from .state import CustomerState


class AbsenceRule(RuleBase):
    trigger: Literal["absence"]
    start: EventFilter
    cancel: EventFilter
    within: Duration


class Absence(Trigger):
    """Slot: (deadline, start event_id) while a start waits for its cancel, else None.

    A cancel is checked before a start, so one event matching both cancels
    the pending start and then arms a new one.
    """

    name = "absence"

    def __init__(self, rule: AbsenceRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.starts = rule.start.compile()
        self.cancels = rule.cancel.compile()
        types = {rule.start.type, rule.cancel.type}
        named = frozenset(t for t in types if t is not None)
        self.event_types = (
            frozenset({"transaction", "app", "conversion"}) if None in types else named
        )
        self.within = rule.within
        self.label = format_duration(rule.within)

    @property
    def horizon(self) -> timedelta:
        return self.within

    def on_event(self, step: Step, event: Event) -> None:
        slots = step.state.rules  # type: ignore[union-attr]
        if slots[self.index] is not None and self.cancels(event):
            slots[self.index] = None
        if slots[self.index] is None and self.starts(event) and self.admits(step):
            deadline = event.occurred_at + self.within
            slots[self.index] = (deadline, event.event_id)
            step.arm(self.index, "", deadline)

    def adopt(self, old: Trigger, slot: Any) -> Any:
        """A pending start keeps its start time; its deadline follows the new `within`."""
        if slot is None or not isinstance(old, Absence):
            return slot
        return (slot[0] - old.within + self.within, slot[1])

    def deadline(self, state: CustomerState, key: str) -> datetime | None:
        pending = state.rules[self.index]
        return pending[0] if pending else None

    def fire(self, step: Step, key: str, deadline: datetime) -> None:
        slots = step.state.rules  # type: ignore[union-attr]
        _, event_id = slots[self.index]
        slots[self.index] = None
        self.emit(step, deadline, event_id, timer=True, within=self.label)
