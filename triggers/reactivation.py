"""`reactivation`: activity after a quiet gap of at least `inactive` (section 3, item 5)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationInfo, field_validator

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration
from .events import Event
from .state import RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet


class ReactivationRule(RuleBase):
    """`memory` bounds state: a customer silent for longer than it is new to the engine."""

    trigger: Literal["reactivation"]
    inactive: Duration = timedelta(days=90)
    memory: Duration = timedelta(days=400)

    @field_validator("memory")
    @classmethod
    def _memory_covers_gap(cls, memory: timedelta, info: ValidationInfo) -> timedelta:
        inactive = info.data.get("inactive")
        if inactive is not None and memory < inactive:
            raise ValueError("must be at least inactive, or the rule can never fire")
        return memory


class Reactivation(Trigger[RuleState]):
    """Stateless: reads the activity clock as it stood before this event."""

    name = "reactivation"
    event_types = frozenset({"transaction", "app"})
    only_activity = True
    uses_activity = True

    def __init__(self, rule: ReactivationRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.inactive = rule.inactive
        self.memory = rule.memory

    @property
    def horizon(self) -> timedelta:
        return self.memory

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        previous = ctx.prev_activity_at
        if previous is None:
            return
        gap = event.occurred_at - previous
        if self.inactive <= gap <= self.memory and self.admits(ctx):
            self.emit(ctx, event.occurred_at, event.event_id, gap_days=gap.days)
