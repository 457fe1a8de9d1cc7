"""`large_deposit`: a credit far above the customer's usual (section 3, item 1)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration
from .events import Event, Kind
from .filters import major_to_minor
from .state import RuleState
from .windows import slide

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
    """A coarse, non-identifying band for an amount in minor units (a loop: no generator)."""
    for floor, label in _BANDS:
        if minor >= floor:
            return label
    raise ValueError("amounts are positive")


def median2(values: list[int]) -> int:
    """Twice the ordinary median, so an even count's half-cents stay exact integers."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return 2 * ordered[mid]
    return ordered[mid - 1] + ordered[mid]


class DepositHistory(RuleState):
    """Qualifying credits within `lookback`: their times (sorted) and amounts in minor units."""

    __slots__ = ("times", "amounts")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.amounts: list[int] = []


class LargeDeposit(Trigger[DepositHistory]):
    """State: the history of qualifying credits, read for the median of the earlier ones."""

    name = "large_deposit"
    event_types = frozenset({"transaction"})
    only_credits = True

    def __init__(self, rule: LargeDepositRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.kinds = self.only_kinds = frozenset(rule.kinds)
        self.min_amount = major_to_minor(rule.min_amount)
        self.multiple = rule.multiple
        self.lookback = rule.lookback
        self.min_history = rule.min_history

    @property
    def horizon(self) -> timedelta:
        return self.lookback

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        # The engine calls this for credits of `kinds` only; the test is for the type checker.
        if event.type != "transaction":
            return
        states = ctx.customer.rule_states  # `state_of`, inlined: this runs for every credit
        history = states[self.index]
        if history is None:
            history = states[self.index] = DepositHistory()
        times, amounts = history.times, history.amounts
        at, amount = event.occurred_at, event.amount
        first, pos = slide(times, amounts, at, self.lookback)  # earlier: (at - lookback, at]
        if (
            amount >= self.min_amount
            and self.admits(ctx)
            and self._unusual(amount, amounts[first:pos])
        ):
            self.emit(ctx, at, event.event_id, amount_band=amount_band(amount))
        times.insert(pos, at)
        amounts.insert(pos, amount)

    def _unusual(self, amount: int, earlier: list[int]) -> bool:
        """`multiple` x the median of enough earlier credits; with none, min_amount decides."""
        if len(earlier) < max(self.min_history, 1):
            return True
        return 2 * amount >= self.multiple * median2(earlier)
