"""`salary_missed` (churn warning): a recognised salary stops arriving (section 3, item 3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .base import RuleBase, Step, Trigger
from .durations import Duration
from .events import Event
from .salary import SalaryCredit

if TYPE_CHECKING:
    from .ruleset import RuleSet
    from .state import CustomerState


class SalaryMissedRule(RuleBase):
    trigger: Literal["salary_missed"]
    grace: Duration = timedelta(days=10)


class SalaryMissed(Trigger):
    """Slot: {counterparty: (deadline, arming event_id, occurrence)} of armed timers.

    Every salary credit re-arms its counterparty's timer at
    `credit + max_interval + grace`; any other credit from that counterparty
    cancels it; it fires once, then waits for the next salary credit.
    """

    name = "salary_missed"
    event_types = frozenset({"transaction"})
    only_salary_readings = True
    uses_salary = True

    def __init__(self, rule: SalaryMissedRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.delay = ruleset.salary.max_interval + rule.grace

    @property
    def horizon(self) -> timedelta:
        return self.delay

    def on_event(self, step: Step, event: Event) -> None:
        reading = step.salary
        if reading is None:
            return
        slots = step.state.rules  # type: ignore[union-attr]
        armed = slots[self.index]
        if isinstance(reading, SalaryCredit):
            if not self.admits(step):
                return
            if armed is None:
                armed = slots[self.index] = {}
            deadline = event.occurred_at + self.delay
            armed[reading.counterparty] = (deadline, event.event_id, reading.occurrence)
            step.arm(self.index, reading.counterparty, deadline)
        elif armed:
            armed.pop(event.counterparty or "", None)  # type: ignore[union-attr]

    def adopt(self, old: Trigger, slot: Any) -> Any:
        """Armed timers keep their salary credit; their deadlines follow the new `grace`."""
        if not slot or not isinstance(old, SalaryMissed) or old.delay == self.delay:
            return slot
        shift = self.delay - old.delay
        return {key: (entry[0] + shift, *entry[1:]) for key, entry in slot.items()}

    def deadline(self, state: CustomerState, key: str) -> datetime | None:
        armed = state.rules[self.index]
        entry = armed.get(key) if armed else None
        return entry[0] if entry else None

    def fire(self, step: Step, key: str, deadline: datetime) -> None:
        armed = step.state.rules[self.index]  # type: ignore[union-attr]
        _, event_id, occurrence = armed.pop(key)
        self.emit(step, deadline, event_id, timer=True, occurrence=occurrence)
