"""`salary_missed` (churn warning): a recognised salary stops arriving (section 3, item 3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .base import RuleBase, RuleContext, Trigger
from .durations import Duration
from .events import Event
from .salary import SalaryCredit
from .state import CustomerState, RuleState, Slotted

if TYPE_CHECKING:
    from .ruleset import RuleSet


class SalaryMissedRule(RuleBase):
    trigger: Literal["salary_missed"]
    grace: Duration = timedelta(days=10)


class ArmedSalary(Slotted):
    """One counterparty's armed timer: its deadline, the arming salary credit and its occurrence."""

    __slots__ = ("deadline", "event_id", "occurrence")

    def __init__(self, deadline: datetime, event_id: str, occurrence: int) -> None:
        self.deadline = deadline
        self.event_id = event_id
        self.occurrence = occurrence


class SalaryMissedState(RuleState):
    """The armed timers of one customer, by counterparty (one timer per employer)."""

    __slots__ = ("armed",)

    def __init__(self) -> None:
        self.armed: dict[str, ArmedSalary] = {}


class SalaryMissed(Trigger[SalaryMissedState]):
    """Every salary credit re-arms its counterparty's timer at `credit + max_interval + grace`.

    Any other credit from that counterparty cancels it; it fires once, then
    waits for the next salary credit.
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

    def timing(self) -> tuple[Any, ...]:
        return (self.delay,)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        reading = ctx.salary
        if reading is None or event.type != "transaction":
            return
        # `state_of`, inlined: this runs for every salary reading
        state: SalaryMissedState | None = ctx.customer.rule_states[self.index]
        if isinstance(reading, SalaryCredit):
            if not self.admits(ctx):
                return
            if state is None:
                state = ctx.customer.rule_states[self.index] = SalaryMissedState()
            deadline = event.occurred_at + self.delay
            armed = state.armed.get(reading.counterparty)
            if armed is None:
                armed = ArmedSalary(deadline, event.event_id, reading.occurrence)
                state.armed[reading.counterparty] = armed
            else:  # the common case, a monthly re-arm: no new object
                armed.deadline, armed.event_id = deadline, event.event_id
                armed.occurrence = reading.occurrence
            ctx.arm(self.index, reading.counterparty, deadline)
        elif state is not None:
            state.armed.pop(event.counterparty or "", None)

    def adopt(
        self, old: Trigger[SalaryMissedState], state: SalaryMissedState | None
    ) -> SalaryMissedState | None:
        """Armed timers keep their salary credit; their deadlines follow the new `grace`."""
        if state is None or not isinstance(old, SalaryMissed) or old.delay == self.delay:
            return state
        shift = self.delay - old.delay
        moved = SalaryMissedState()
        for key, a in state.armed.items():
            moved.armed[key] = ArmedSalary(a.deadline + shift, a.event_id, a.occurrence)
        return moved

    def deadline(self, customer: CustomerState, key: str) -> datetime | None:
        state = self.state_of(customer)
        armed = state.armed.get(key) if state is not None else None
        return armed.deadline if armed is not None else None

    def fire(self, ctx: RuleContext, key: str, deadline: datetime) -> None:
        state = self.state_of(ctx.customer)
        armed = state.armed.pop(key, None) if state is not None else None
        if armed is not None:  # always: the engine fires only timers whose deadline() is set
            self.emit(ctx, deadline, armed.event_id, timer=True, occurrence=armed.occurrence)
