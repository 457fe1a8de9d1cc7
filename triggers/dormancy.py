"""`dormancy`: no customer-initiated activity for `inactive` (section 3, item 4)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration
from .events import Event
from .state import CustomerState, RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet


class DormancyRule(RuleBase):
    trigger: Literal["dormancy"]
    inactive: Duration = timedelta(days=90)


class DormancyState(RuleState):
    """The activity time the timer last fired for: it fires once per quiet period."""

    __slots__ = ("fired_for",)

    def __init__(self, fired_for: datetime) -> None:
        self.fired_for = fired_for


class Dormancy(Trigger[DormancyState]):
    """The deadline is always `last activity + inactive`, read from the shared activity clock.

    A new activity simply moves it later, and the engine's heap entry is
    pushed forward lazily when it comes due.
    """

    name = "dormancy"
    event_types = frozenset({"transaction", "app"})
    only_activity = True
    uses_activity = True

    def __init__(self, rule: DormancyRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.inactive = rule.inactive

    @property
    def horizon(self) -> timedelta:
        return self.inactive

    def timing(self) -> tuple[Any, ...]:
        return (self.inactive,)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        customer = ctx.customer
        queued = customer.queued  # `CustomerState.queue`'s test, inlined: runs per activity
        if queued is not None and (
            self.index in queued if isinstance(queued, dict) else queued[0] == self.index
        ):
            return  # already queued no later than the new deadline: nothing to push (see engine)
        last = customer.last_activity_at
        if last is not None and self.admits(ctx):  # always set: the engine recorded it first
            ctx.arm(self.index, "", last + self.inactive)

    def deadline(self, customer: CustomerState, key: str) -> datetime | None:
        last = customer.last_activity_at
        if last is None:
            return None
        fired = customer.rule_states[self.index]  # `state_of`, inlined: called per heap pop
        if fired is not None and fired.fired_for == last:
            return None
        return last + self.inactive

    def fire(self, ctx: RuleContext, key: str, deadline: datetime) -> None:
        customer = ctx.customer
        last = customer.last_activity_at
        if last is None:
            return  # never: the timer is armed only after an activity
        fired = self.state_of(customer)
        if fired is None:
            customer.rule_states[self.index] = DormancyState(last)
        else:
            fired.fired_for = last
        event_id = customer.last_activity_id
        self.emit(ctx, deadline, event_id, timer=True, inactive_days=self.inactive.days)
