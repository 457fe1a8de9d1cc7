"""`absence`: "A not followed by B within a duration" (section 3, item 8)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration, format_duration
from .events import Event
from .filters import EventFilter
from .state import CustomerState, RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet


class AbsenceRule(RuleBase):
    trigger: Literal["absence"]
    start: EventFilter
    cancel: EventFilter
    within: Duration


class AbsenceState(RuleState):
    """The start waiting for its cancel: its deadline and event id."""

    __slots__ = ("deadline", "event_id")

    def __init__(self, deadline: datetime, event_id: str) -> None:
        self.deadline = deadline
        self.event_id = event_id


class Absence(Trigger[AbsenceState]):
    """State: the pending start, or None when nothing waits.

    A cancel is checked before a start, so one event matching both cancels
    the pending start and then arms a new one. A new start while one is
    pending does not re-arm (section 3, item 8).
    """

    name = "absence"

    def __init__(self, rule: AbsenceRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        types = {rule.start.type, rule.cancel.type}
        named = frozenset(t for t in types if t is not None)
        self.event_types = (
            frozenset({"transaction", "app", "conversion"}) if None in types else named
        )
        self.starts = rule.start.compile(self.event_types)
        self.cancels = rule.cancel.compile(self.event_types)
        self.only_kinds = _either(rule.start.values("kind"), rule.cancel.values("kind"))
        self.only_actions = _either(rule.start.values("action"), rule.cancel.values("action"))
        self.within = rule.within
        self.label = format_duration(rule.within)

    @property
    def horizon(self) -> timedelta:
        return self.within

    def timing(self) -> tuple[Any, ...]:
        return (self.within,)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        states = ctx.customer.rule_states
        if states[self.index] is not None and self.cancels(event):
            states[self.index] = None
        if states[self.index] is None and self.starts(event) and self.admits(ctx):
            deadline = event.occurred_at + self.within
            states[self.index] = AbsenceState(deadline, event.event_id)
            ctx.arm(self.index, "", deadline)

    def adopt(self, old: Trigger[AbsenceState], state: AbsenceState | None) -> AbsenceState | None:
        """A pending start keeps its start time; its deadline follows the new `within`."""
        if state is None or not isinstance(old, Absence):
            return state
        return AbsenceState(state.deadline - old.within + self.within, state.event_id)

    def deadline(self, customer: CustomerState, key: str) -> datetime | None:
        pending = self.state_of(customer)
        return pending.deadline if pending else None

    def fire(self, ctx: RuleContext, key: str, deadline: datetime) -> None:
        pending = self.state_of(ctx.customer)
        if pending is None:
            return  # never: the engine fires only timers whose deadline() is set
        ctx.customer.rule_states[self.index] = None
        self.emit(ctx, deadline, pending.event_id, timer=True, within=self.label)


def _either(starts: frozenset[str] | None, cancels: frozenset[str] | None) -> frozenset[str] | None:
    """What the engine must pass on: the values either filter admits (None: any)."""
    return None if starts is None or cancels is None else starts | cancels
