"""The engine's part of the rules file: engine settings, salary parameters and the rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .absence import Absence, AbsenceRule
from .balance_milestone import BalanceMilestone, BalanceMilestoneRule
from .base import Trigger
from .dormancy import Dormancy, DormancyRule
from .durations import Duration
from .follow_up import FollowUp, FollowUpRule
from .large_deposit import LargeDeposit, LargeDepositRule
from .reactivation import Reactivation, ReactivationRule
from .salary import SalaryParams
from .salary_credit import SalaryCreditRule, SalaryCreditTrigger
from .salary_missed import SalaryMissed, SalaryMissedRule
from .window_threshold import WindowThreshold, WindowThresholdRule

Rule = Annotated[
    LargeDepositRule
    | SalaryCreditRule
    | SalaryMissedRule
    | DormancyRule
    | ReactivationRule
    | BalanceMilestoneRule
    | WindowThresholdRule
    | AbsenceRule
    | FollowUpRule,
    Field(discriminator="trigger"),
]

TRIGGERS: dict[str, type[Trigger[Any]]] = {
    "large_deposit": LargeDeposit,
    "salary_credit": SalaryCreditTrigger,
    "salary_missed": SalaryMissed,
    "dormancy": Dormancy,
    "reactivation": Reactivation,
    "balance_milestone": BalanceMilestone,
    "window_threshold": WindowThreshold,
    "absence": Absence,
    "follow_up": FollowUp,
}


class EngineParams(BaseModel):
    """The `engine:` block: how the engine treats time and repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    allowed_lateness: Duration = timedelta(0)
    max_future: Duration = timedelta(minutes=5)
    dedupe_window: Duration = timedelta(hours=24)


class RuleSet(BaseModel):
    """Everything the trigger engine needs; the rules file adds the contact policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int | str = 0
    engine: EngineParams = EngineParams()
    salary: SalaryParams = SalaryParams()
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> RuleSet:
        problems = duplicate_rule_ids(self.rules)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def paused_campaigns(self) -> frozenset[str]:
        """Campaigns whose rules keep their state but emit nothing (the rules file has them)."""
        return frozenset()

    def compile(self) -> list[Trigger[Any]]:
        """One compiled trigger per rule, in file order (the order ties are broken in)."""
        return [TRIGGERS[rule.trigger](rule, i, self) for i, rule in enumerate(self.rules)]


def duplicate_rule_ids(rules: list[Rule]) -> list[str]:
    """`rules[i].rule_id: ...` for every rule reusing an earlier rule's id."""
    first: dict[str, int] = {}
    problems = []
    for i, rule in enumerate(rules):
        if rule.rule_id in first:
            problems.append(
                f"rules[{i}].rule_id: {rule.rule_id!r} is already used"
                f" by rules[{first[rule.rule_id]}]"
            )
        first.setdefault(rule.rule_id, i)
    return problems
