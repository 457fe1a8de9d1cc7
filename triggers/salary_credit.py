"""`salary_credit`: a payroll credit or a recognised monthly transfer (section 3, item 2)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from .base import RuleBase, RuleContext, Trigger
from .events import Event
from .salary import SalaryCredit
from .state import RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet


class SalaryCreditRule(RuleBase):
    trigger: Literal["salary_credit"]
    only_first: bool = False


class SalaryCreditTrigger(Trigger[RuleState]):
    """Stateless itself: the engine's salary tracker has read the credit before this runs."""

    name = "salary_credit"
    event_types = frozenset({"transaction"})
    only_salary_readings = True
    uses_salary = True

    def __init__(self, rule: SalaryCreditRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.only_first = rule.only_first
        self.memory = ruleset.salary.memory

    @property
    def horizon(self) -> timedelta:
        return self.memory

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        reading = ctx.salary
        if not isinstance(reading, SalaryCredit):
            return
        if self.only_first and not reading.first_detection:
            return
        if self.admits(ctx):
            self.emit(
                ctx,
                event.occurred_at,
                event.event_id,
                occurrence=reading.occurrence,
                first_detection=reading.first_detection,
            )
