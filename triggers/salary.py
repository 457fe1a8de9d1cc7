"""Salary recognition shared by `salary_credit` and `salary_missed` (section 3, items 2-3).

The engine reads each credit once through `observe`, which updates the
customer's per-counterparty series and answers what the credit is: a salary
credit (with its occurrence and whether the pair is newly recognised), some
other credit from a known counterparty (which cancels a salary-missed
timer), or nothing of interest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from .durations import Duration
from .events import TransactionEvent

OTHER_CREDIT = "other_credit"
_PRUNE_EVERY = 8


class SalaryParams(BaseModel):
    """The `salary:` block of the rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_interval: Duration = timedelta(days=25)
    max_interval: Duration = timedelta(days=35)
    tolerance: Decimal = Field(default=Decimal("0.2"), ge=0)
    min_occurrences: int = Field(default=3, ge=1)
    memory: Duration = timedelta(days=400)


class SalaryCredit:
    """This credit is a salary credit from `counterparty`.

    A plain slotted class: one is built per salary credit and read once by the
    salary rules, and a frozen dataclass costs three times as much to build.
    """

    __slots__ = ("counterparty", "occurrence", "first_detection")

    def __init__(self, counterparty: str, occurrence: int, first_detection: bool) -> None:
        self.counterparty = counterparty
        self.occurrence = occurrence
        self.first_detection = first_detection


class Payer:
    """One counterparty's series for one customer."""

    __slots__ = ("last_at", "last_amount", "length", "salary_at", "payrolls")

    def __init__(self) -> None:
        self.last_at: datetime | None = None  # previous transfer_in from this payer
        self.last_amount = 0
        self.length = 0  # current transfer_in series length
        self.salary_at: datetime | None = None  # newest salary credit: the pair's memory
        self.payrolls: list[datetime] = []  # payroll credits within `memory`


class SalaryTracker:
    """Reads credits into per-counterparty salary series."""

    def __init__(self, params: SalaryParams) -> None:
        self.params = params
        # `tolerance` as an exact integer ratio: two int products per transfer, not Decimals
        self._tolerance = params.tolerance.as_integer_ratio()

    def observe(
        self, payers: dict[str, Payer], event: TransactionEvent
    ) -> SalaryCredit | str | None:
        """Update the series for this credit; say whether it is a salary credit."""
        counterparty = event.counterparty or ""
        if event.kind == "payroll":
            payer = payers.get(counterparty) or self._new_payer(payers, counterparty, event)
            return self._payroll(payer, event, counterparty)
        if not counterparty:
            return None
        if event.kind == "transfer_in":
            payer = payers.get(counterparty) or self._new_payer(payers, counterparty, event)
            return self._transfer(payer, event, counterparty)
        return OTHER_CREDIT if counterparty in payers else None

    def _new_payer(
        self, payers: dict[str, Payer], counterparty: str, event: TransactionEvent
    ) -> Payer:
        if len(payers) >= _PRUNE_EVERY and len(payers) % _PRUNE_EVERY == 0:
            self._forget_stale(payers, event.occurred_at)
        payer = payers[counterparty] = Payer()
        return payer

    def _payroll(self, payer: Payer, event: TransactionEvent, counterparty: str) -> SalaryCredit:
        at = event.occurred_at
        cutoff = at - self.params.memory
        payrolls = payer.payrolls
        if payrolls and min(payrolls) <= cutoff:  # rebuilt only when one aged out
            payrolls = payer.payrolls = [t for t in payrolls if t > cutoff]
        payrolls.append(at)
        return self._recognise(payer, at, counterparty, len(payrolls))

    def _transfer(
        self, payer: Payer, event: TransactionEvent, counterparty: str
    ) -> SalaryCredit | str:
        at, amount, p = event.occurred_at, event.amount, self.params
        over, under = self._tolerance  # |amount - last| <= tolerance * last, exactly
        if (
            payer.last_at is not None
            and p.min_interval <= at - payer.last_at <= p.max_interval
            and abs(amount - payer.last_amount) * under <= over * payer.last_amount
        ):
            payer.length += 1
        else:
            payer.length = 1
        payer.last_at, payer.last_amount = at, amount
        if payer.length < p.min_occurrences:
            return OTHER_CREDIT
        return self._recognise(payer, at, counterparty, payer.length)

    def _recognise(
        self, payer: Payer, at: datetime, counterparty: str, occurrence: int
    ) -> SalaryCredit:
        last = payer.salary_at
        first = last is None or at - last > self.params.memory
        if last is None or at > last:
            payer.salary_at = at
        return SalaryCredit(counterparty, occurrence, first)

    def _forget_stale(self, payers: dict[str, Payer], now: datetime) -> None:
        """Drop payers that can neither continue a series nor be remembered as salary.

        Run every few new payers rather than per credit, so a customer with
        many one-off payers costs amortised O(1) per credit.
        """
        for counterparty in [c for c, payer in payers.items() if self.is_stale(payer, now)]:
            del payers[counterparty]

    def is_stale(self, payer: Payer, now: datetime) -> bool:
        """True once the payer's series cannot continue and the pair is forgotten."""
        p = self.params
        series_over = payer.last_at is None or now - payer.last_at > p.max_interval
        forgotten = payer.salary_at is None or now - payer.salary_at > p.memory
        return series_over and forgotten
