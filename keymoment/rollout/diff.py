"""What changed between two rule versions, and what state carries over (docs/rollout.md).

Rules are matched by `rule_id`. Each parameter of a rule is one of:

- *shaping*: decides which events a rule remembers at all (the trigger type,
  a filter, `kinds`, an aggregate): a change means fresh state;
- *horizon*: how long state or a timer lasts (windows, lookbacks, timer
  lengths): state carries over; a widened window sees only what the old one kept;
- anything else (thresholds, campaign, only_first, ...): state carries over
  and only the decision changes.

`plan(old, new)` answers for every rule of `new` which old rule index (if
any) hands over its state, which is all the engine needs (`Engine.switched`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from keymoment.config import RulesFile

Kind = Literal["added", "removed", "fresh", "widened", "narrowed", "thresholds", "unchanged"]
CARRIES: frozenset[str] = frozenset({"widened", "narrowed", "thresholds", "unchanged"})

SHAPING = frozenset(
    {
        "trigger",
        "customer_filter",
        "filter",
        "kinds",
        "aggregate",
        "start",
        "cancel",
        "after",
        "unless",
    }
)
HORIZON = frozenset({"lookback", "window", "onboarding", "memory", "inactive", "within", "grace"})
NOT_STATE = frozenset({"mode", "description"})
# Salary settings that change what a series is: the tracker's series restart.
SALARY_SHAPING = frozenset({"min_interval", "max_interval", "tolerance", "min_occurrences"})


@dataclass(frozen=True)
class RuleChange:
    """One rule's verdict: how it changed, and each changed parameter as (old, new)."""

    rule_id: str
    kind: Kind
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RulesDiff:
    """Everything that changed from one version to the next."""

    rules: list[RuleChange]
    sections: dict[str, tuple[Any, Any]]  # campaigns, caps, channels, lists, policy, salary, ...
    carry: dict[int, int]  # new rule index -> old rule index whose state it adopts
    reset_salary: bool  # salary series shaping changed: every customer's payers restart

    def by_kind(self, kind: Kind) -> list[str]:
        return [r.rule_id for r in self.rules if r.kind == kind]

    @property
    def identical(self) -> bool:
        return not self.sections and all(r.kind == "unchanged" for r in self.rules)


def changed_fields(old: BaseModel, new: BaseModel) -> dict[str, tuple[Any, Any]]:
    """Every field whose value differs, as JSON-ready (old, new)."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def classify(old: BaseModel, new: BaseModel) -> RuleChange:
    """One rule present in both versions."""
    changes = changed_fields(old, new)
    rule_id: str = getattr(new, "rule_id")  # noqa: B009  (both are rules)
    names = set(changes) - NOT_STATE
    if names & SHAPING:
        return RuleChange(rule_id, "fresh", changes)
    horizons = names & HORIZON
    if horizons:
        wider = any(getattr(new, n) > getattr(old, n) for n in horizons)
        return RuleChange(rule_id, "widened" if wider else "narrowed", changes)
    return RuleChange(rule_id, "thresholds" if changes else "unchanged", changes)


def diff(old: RulesFile, new: RulesFile) -> RulesDiff:
    """Classify every rule and list every other section that changed."""
    old_at = {r.rule_id: i for i, r in enumerate(old.rules)}
    new_ids = {r.rule_id for r in new.rules}
    rules, carry = [], {}
    salary = changed_fields(old.salary, new.salary)
    reset_salary = bool(set(salary) & SALARY_SHAPING)
    for i, rule in enumerate(new.rules):
        j = old_at.get(rule.rule_id)
        if j is None:
            rules.append(RuleChange(rule.rule_id, "added"))
            continue
        change = classify(old.rules[j], rule)
        if reset_salary and rule.trigger in ("salary_credit", "salary_missed"):
            change = RuleChange(rule.rule_id, "fresh", change.changes)
        rules.append(change)
        if change.kind in CARRIES:
            carry[i] = j
    rules += [RuleChange(r.rule_id, "removed") for r in old.rules if r.rule_id not in new_ids]
    return RulesDiff(rules, _sections(old, new), carry, reset_salary)


def _sections(old: RulesFile, new: RulesFile) -> dict[str, tuple[Any, Any]]:
    """Changed top-level sections other than `rules` and `version`."""
    a = old.model_dump(mode="json", exclude={"rules", "version", "lists"})
    b = new.model_dump(mode="json", exclude={"rules", "version", "lists"})
    a["lists"] = sorted(old.lists)
    b["lists"] = sorted(new.lists)
    return {k: (a[k], b[k]) for k in sorted(a) if a[k] != b[k]}


def refusals(old: RulesFile, new: RulesFile) -> list[str]:
    """Why `new` may not replace `old` in a running engine (empty when it may)."""
    problems = []
    if old.engine.allowed_lateness != new.engine.allowed_lateness:
        problems.append(
            "engine.allowed_lateness: cannot change in a running engine"
            " (the watermark depends on it); restart to change it"
        )
    if not _newer(new.version, old.version):
        problems.append(
            f"version: {new.version!r} is not higher than the version in force ({old.version!r})"
        )
    return problems


def _newer(new: int | str, old: int | str) -> bool:
    if isinstance(new, int) and isinstance(old, int):
        return new > old
    return str(new) > str(old)
