"""`dormancy`: no customer-initiated activity for `inactive` (section 3, item 4)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from .base import RuleBase, Step, Trigger
from .durations import Duration
from .events import Event

if TYPE_CHECKING:
    from .ruleset import RuleSet
    from .state import CustomerState


class DormancyRule(RuleBase):
    trigger: Literal["dormancy"]
    inactive: Duration = timedelta(days=90)


class Dormancy(Trigger):
    """Slot: the activity time the timer last fired for (one firing per quiet period).

    The deadline is always `last activity + inactive`, read from the shared
    activity clock, so a new activity simply moves it later and the engine's
    heap entry is pushed forward lazily when it comes due.
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

    def on_event(self, step: Step, event: Event) -> None:
        if self.index in step.state.queued:  # type: ignore[union-attr]
            return  # already queued no later than the new deadline: nothing to push (see engine)
        if self.admits(step):
            state = step.state
            last = state.last_activity_at  # type: ignore[union-attr]
            if last is not None:  # always: the engine recorded this activity first
                step.arm(self.index, "", last + self.inactive)

    def deadline(self, state: CustomerState, key: str) -> datetime | None:
        last = state.last_activity_at
        if last is None or state.rules[self.index] == last:
            return None
        return last + self.inactive

    def fire(self, step: Step, key: str, deadline: datetime) -> None:
        state = step.state
        last = state.last_activity_at  # type: ignore[union-attr]
        state.rules[self.index] = last  # type: ignore[union-attr]
        event_id = state.last_activity_id  # type: ignore[union-attr]
        self.emit(step, deadline, event_id, timer=True, inactive_days=self.inactive.days)
