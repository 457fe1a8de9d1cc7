"""`large_deposit`: a credit far above the customer's usual (section 3, item 1)."""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .base import RuleBase, Step, Trigger
from .durations import Duration
from .events import Event, Kind
from .filters import major_to_minor

if TYPE_CHECKING:
    from .ruleset import RuleSet

# Coarse bands for the candidate: enough for copy ("a large deposit"), never the amount.
_BANDS = ((100_000_000, "1m+"), (50_000_000, "500k-1m"), (10_000_000, "100k-500k"), (0, "<100k"))


DEFAULT_KINDS: tuple[Kind, ...] = ("cash_deposit", "transfer_in")


class LargeDepositRule(RuleBase):
    trigger: Literal["large_deposit"]
    min_amount: Decimal = Field(default=Decimal(50000), gt=0)
    multiple: Decimal = Field(default=Decimal(5), ge=0)
    min_history: int = Field(default=3, ge=0)
    lookback: Duration = timedelta(days=90)
    kinds: list[Kind] = Field(default_factory=lambda: list(DEFAULT_KINDS), min_length=1)


def amount_band(minor: int) -> str:
    """A coarse, non-identifying band for an amount in minor units."""
    return next(label for floor, label in _BANDS if minor >= floor)


def median2(values: list[int]) -> int:
    """Twice the ordinary median, so an even count's half-cents stay exact integers."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return 2 * ordered[mid]
    return ordered[mid - 1] + ordered[mid]


class LargeDeposit(Trigger):
    """History: (occurred_at, amount) of qualifying credits within `lookback`, sorted by time."""

    name = "large_deposit"
    event_types = frozenset({"transaction"})
    only_credits = True

    def __init__(self, rule: LargeDepositRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.kinds = frozenset(rule.kinds)
        self.min_amount = major_to_minor(rule.min_amount)
        self.multiple = rule.multiple
        self.lookback = rule.lookback
        self.min_history = rule.min_history

    @property
    def horizon(self) -> timedelta:
        return self.lookback

    def on_event(self, step: Step, event: Event) -> None:
        if event.direction != "credit" or event.kind not in self.kinds:  # type: ignore[union-attr]
            return
        times, amounts = self._history(step, event.occurred_at)
        at, amount = event.occurred_at, event.amount  # type: ignore[union-attr]
        earlier = _within(times, amounts, at - self.lookback, at)
        if amount >= self.min_amount and self.admits(step) and self._unusual(amount, earlier):
            self.emit(step, at, event.event_id, amount_band=amount_band(amount))
        pos = bisect_right(times, at)
        times.insert(pos, at)
        amounts.insert(pos, amount)

    def _unusual(self, amount: int, earlier: list[int]) -> bool:
        """`multiple` x the median of enough earlier credits; with none, min_amount decides."""
        if len(earlier) < max(self.min_history, 1):
            return True
        return 2 * amount >= self.multiple * median2(earlier)

    def _history(self, step: Step, at: datetime) -> tuple[list[datetime], list[int]]:
        """This rule's history for the customer, with entries older than any window dropped."""
        slots = step.state.rules  # type: ignore[union-attr]
        history = slots[self.index]
        if history is None:
            history = slots[self.index] = ([], [])
        times, amounts = history
        newest = max(at, times[-1]) if times else at
        drop = bisect_right(times, newest - self.lookback)
        if drop:
            del times[:drop], amounts[:drop]
        return history


def _within(times: list[datetime], amounts: list[int], low: datetime, high: datetime) -> list[int]:
    """Amounts with time in (low, high]."""
    return amounts[bisect_right(times, low) : bisect_right(times, high)]
