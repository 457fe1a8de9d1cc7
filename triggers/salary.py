"""Salary recognition shared by `salary_credit` and `salary_missed` (section 3, items 2-3).

The engine reads each credit once through `observe`, which updates the
customer's per-counterparty series and answers what the credit is: a salary
credit (with its occurrence and whether the pair is newly recognised), some
other credit from a known counterparty (which cancels a salary-missed
timer), or nothing of interest.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class SalaryCredit:
    """This credit is a salary credit from `counterparty`."""

    counterparty: str
    occurrence: int
    first_detection: bool


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

    def observe(
        self, payers: dict[str, Payer], event: TransactionEvent
    ) -> SalaryCredit | str | None:
        """Update the series for this credit; say whether it is a salary credit."""
        counterparty = event.counterparty or ""
        if event.kind == "payroll":
            return self._payroll(self._payer(payers, event), event, counterparty)
        if not counterparty:
            return None
        if event.kind == "transfer_in":
            return self._transfer(self._payer(payers, event), event, counterparty)
        return OTHER_CREDIT if counterparty in payers else None

    def _payer(self, payers: dict[str, Payer], event: TransactionEvent) -> Payer:
        counterparty = event.counterparty or ""
        payer = payers.get(counterparty)
        if payer is None:
            if len(payers) >= _PRUNE_EVERY and len(payers) % _PRUNE_EVERY == 0:
                self._forget_stale(payers, event.occurred_at)
            payer = payers[counterparty] = Payer()
        return payer

    def _payroll(self, payer: Payer, event: TransactionEvent, counterparty: str) -> SalaryCredit:
        at = event.occurred_at
        cutoff = at - self.params.memory
        payer.payrolls = [t for t in payer.payrolls if t > cutoff]
        payer.payrolls.append(at)
        return self._recognise(payer, at, counterparty, len(payer.payrolls))

    def _transfer(
        self, payer: Payer, event: TransactionEvent, counterparty: str
    ) -> SalaryCredit | str:
        at, amount, p = event.occurred_at, event.amount, self.params
        if (
            payer.last_at is not None
            and p.min_interval <= at - payer.last_at <= p.max_interval
            and abs(amount - payer.last_amount) <= p.tolerance * payer.last_amount
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
        first = payer.salary_at is None or at - payer.salary_at > self.params.memory
        payer.salary_at = at if payer.salary_at is None else max(payer.salary_at, at)
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
