"""`balance_milestone` (onboarding, "honeymoon"): balance passes a threshold early on (item 6)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from .base import RuleBase, Step, Trigger
from .durations import Duration
from .events import Event
from .filters import major_to_minor

if TYPE_CHECKING:
    from .ruleset import RuleSet


_ZERO = timedelta(0)


class BalanceMilestoneRule(RuleBase):
    trigger: Literal["balance_milestone"]
    thresholds: list[Decimal] = Field(
        default_factory=lambda: [Decimal(1000), Decimal(10000), Decimal(50000)], min_length=1
    )
    onboarding: Duration = timedelta(days=90)

    @field_validator("thresholds")
    @classmethod
    def _sorted_unique(cls, values: list[Decimal]) -> list[Decimal]:
        if any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError("thresholds must be strictly increasing")
        return values


class BalanceMilestone(Trigger):
    """Slot: bit mask of the thresholds this customer has reached."""

    name = "balance_milestone"
    event_types = frozenset({"transaction"})

    def __init__(self, rule: BalanceMilestoneRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.thresholds = [major_to_minor(t) for t in rule.thresholds]
        self.labels = [
            format(t, "f").rstrip("0").rstrip(".") if "." in str(t) else str(t)
            for t in rule.thresholds
        ]
        self.onboarding = rule.onboarding
        self.all_reached = (1 << len(self.thresholds)) - 1

    @property
    def horizon(self) -> timedelta:
        return self.onboarding

    def adopt(self, old: Trigger, slot: Any) -> Any:
        """A new threshold counts as reached when an old one at or above it was (rollout)."""
        if not slot or not isinstance(old, BalanceMilestone) or old.thresholds == self.thresholds:
            return slot
        top = max(t for i, t in enumerate(old.thresholds) if slot >> i & 1)
        return sum(1 << i for i, t in enumerate(self.thresholds) if t <= top) or None

    def on_event(self, step: Step, event: Event) -> None:
        balance = event.balance_after  # type: ignore[union-attr]
        if balance is None:
            return
        state = step.state
        reached = state.rules[self.index] or 0  # type: ignore[union-attr]
        if reached == self.all_reached:
            return
        profile = step.profile
        opened_at = (profile.opened_at if profile else None) or state.first_seen_at  # type: ignore[union-attr]
        since = event.occurred_at - opened_at
        if since < _ZERO or since > self.onboarding:
            return
        newly = [i for i, t in enumerate(self.thresholds) if balance >= t and not reached >> i & 1]
        if not newly or not self.admits(step):
            return
        state.rules[self.index] = reached | (1 << (newly[-1] + 1)) - 1  # type: ignore[union-attr]
        self.emit(step, event.occurred_at, event.event_id, threshold=self.labels[newly[-1]])
