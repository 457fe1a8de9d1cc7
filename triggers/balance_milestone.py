"""`balance_milestone` (onboarding, "honeymoon"): balance passes a threshold early on (item 6)."""

from __future__ import annotations

from bisect import bisect_right
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration
from .events import Event
from .filters import major_to_minor
from .state import RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet


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


class MilestoneState(RuleState):
    """How many of the rule's thresholds (strictly increasing) this customer has reached.

    Reaching a threshold counts every lower one as reached, so the reached
    thresholds are always the first `reached` of them.
    """

    __slots__ = ("reached",)

    def __init__(self, reached: int) -> None:
        self.reached = reached


class BalanceMilestone(Trigger[MilestoneState]):
    """State: the count of thresholds reached; fires for the highest one an event newly reaches."""

    name = "balance_milestone"
    profile_in_events = True  # the onboarding start: `opened_at`
    event_types = frozenset({"transaction"})

    def __init__(self, rule: BalanceMilestoneRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.thresholds = [major_to_minor(t) for t in rule.thresholds]
        self.labels = [
            format(t, "f").rstrip("0").rstrip(".") if "." in str(t) else str(t)
            for t in rule.thresholds
        ]
        self.onboarding = rule.onboarding

    @property
    def horizon(self) -> timedelta:
        return self.onboarding

    def adopt(
        self, old: Trigger[MilestoneState], state: MilestoneState | None
    ) -> MilestoneState | None:
        """A new threshold counts as reached when an old one at or above it was (rollout)."""
        if state is None or not isinstance(old, BalanceMilestone):
            return state
        if old.thresholds == self.thresholds:
            return state
        top = old.thresholds[state.reached - 1]  # the highest threshold reached
        reached = bisect_right(self.thresholds, top)
        return MilestoneState(reached) if reached else None

    def timing(self) -> tuple[Any, ...]:
        return tuple(self.thresholds)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        if event.type != "transaction" or event.balance_after is None:
            return
        customer = ctx.customer
        profile = ctx.profile
        opened_at = (profile.opened_at if profile else None) or customer.first_seen_at
        at = event.occurred_at
        if at < opened_at or at - opened_at > self.onboarding:
            return  # most transactions: outside onboarding, so the state is not even read
        state = self.state_of(customer)
        reached = 0 if state is None else state.reached
        if reached == len(self.thresholds):
            return
        now = bisect_right(self.thresholds, event.balance_after)  # thresholds at or below it
        if now <= reached or not self.admits(ctx):
            return
        if state is None:
            customer.rule_states[self.index] = MilestoneState(now)
        else:
            state.reached = now
        self.emit(ctx, at, event.event_id, threshold=self.labels[now - 1])
