"""The shape every trigger shares: its rule model, its compiled form, and its `RuleContext`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .candidate import Candidate
from .events import CustomerProfile, Event
from .filters import CustomerFilter
from .state import CustomerState, RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet
    from .salary import SalaryCredit

S = TypeVar("S", bound=RuleState)
# The engine's timer hook: (customer_id, customer, rule index, key, deadline).
Arm = Callable[[str, CustomerState, int, str, datetime], None]


class RuleBase(BaseModel):
    """Fields common to every rule; each trigger module adds its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    campaign: str
    description: str | None = None
    customer_filter: CustomerFilter | None = None
    # live: decided and sent; shadow: decided, never sent (the policy's part); paused:
    # state kept up to date, no candidate (docs/rollout.md)
    mode: Literal["live", "shadow", "paused"] = "live"


class RuleContext:
    """What a trigger sees while the engine evaluates one event or fires one timer.

    One instance per engine, reset per event, so the hot path allocates
    nothing but the candidates themselves.
    """

    __slots__ = ("customer_id", "profile", "customer", "prev_activity_at", "salary", "out", "_arm")
    customer: CustomerState  # the customer state of `customer_id`, set by the engine per event

    def __init__(self, arm: Arm) -> None:
        self._arm = arm
        self.customer_id = ""
        self.profile: CustomerProfile | None = None
        self.prev_activity_at: datetime | None = None  # newest activity before this event
        self.salary: SalaryCredit | str | None = None  # this credit's salary reading
        self.out: list[Candidate] = []

    def arm(self, index: int, key: str, deadline: datetime) -> None:
        """Make sure the engine will look at timer (index, key) no later than `deadline`."""
        self._arm(self.customer_id, self.customer, index, key, deadline)


class Trigger(Generic[S]):
    """A rule compiled for the engine; `S` is the class of its per-customer rule state.

    `on_event` sees each event of the types in `event_types`; timer triggers
    also answer `deadline` (the current deadline of one of their timers, or
    None when it is not armed) and `fire`. `horizon` is how long after a
    customer's newest event this rule can still need its state.
    """

    name: ClassVar[str]
    event_types: frozenset[str] = frozenset()  # rules built from filters set their own
    uses_salary: ClassVar[bool] = False
    uses_activity: ClassVar[bool] = False
    # The engine calls `on_event` only for events that satisfy these, so
    # most triggers are not even called for most events.
    only_activity: ClassVar[bool] = False  # customer-initiated activity (section 2)
    only_credits: ClassVar[bool] = False  # transactions with direction credit
    only_salary_readings: ClassVar[bool] = False  # credits the salary tracker had a reading for
    only_kinds: frozenset[str] | None = None  # transactions of these kinds (None: any kind)
    only_actions: frozenset[str] | None = None  # app events with these actions (None: any)
    # `on_event` reads `ctx.profile` for more than the customer filter (`reads_profile`).
    profile_in_events: ClassVar[bool] = False

    def __init__(self, rule: RuleBase, index: int, ruleset: RuleSet) -> None:
        self.rule = rule
        self.index = index
        self.rule_id: str = rule.rule_id
        self.campaign: str = rule.campaign
        self.customer_filter = rule.customer_filter
        self.paused = rule.mode == "paused" or rule.campaign in ruleset.paused_campaigns()

    @property
    def horizon(self) -> timedelta:
        raise NotImplementedError

    def state_of(self, customer: CustomerState) -> S | None:
        """This rule's state for the customer, None until the rule has something to keep."""
        # Only this trigger writes entry `index`, always an `S` (`rule_states` holds `Any`
        # so that no runtime `cast` call is paid on the hot path).
        state: S | None = customer.rule_states[self.index]
        return state

    def wants(
        self, event_type: str, subtype: str, *, active: bool, credit: bool, salary: bool
    ) -> bool:
        """Whether the engine should call `on_event` for events of this description.

        `subtype` is a transaction's kind or an app event's action ("" for a conversion).
        """
        only = {"transaction": self.only_kinds, "app": self.only_actions}.get(event_type)
        return (
            event_type in self.event_types
            and (only is None or subtype in only)
            and (active or not self.only_activity)
            and (credit or not self.only_credits)
            and (salary or not self.only_salary_readings)
        )

    @property
    def reads_profile(self) -> bool:
        """Whether `on_event` may read the customer's reference data (`ctx.profile`).

        Only the customer filter and triggers that say so do; when no rule of an
        engine does, its driver passes no profile (`Engine.reads_profiles`).
        """
        return self.profile_in_events or self.customer_filter is not None

    def admits(self, ctx: RuleContext) -> bool:
        """The rule's customer filter, if any, against this customer's reference data."""
        return self.customer_filter is None or self.customer_filter.admits(ctx.profile)

    def adopt(self, old: Trigger[S], state: S | None) -> S | None:
        """This rule's state for a customer, from the state the previous version kept (rollout).

        `old` is the same trigger type (`triggers/switch.py` carries nothing
        else). The default keeps the state as it is: its shape depends only on
        the parameters a rollout classifies as shaping (`keymoment.rollout.diff`).
        """
        return state

    def timing(self) -> tuple[Any, ...]:
        """What this rule's kept states and deadlines depend on besides the shaping parameters.

        Equal between two versions, `adopt` keeps every state as it is and no
        deadline moves, so a switch hands the customers over untouched
        (`triggers/switch.py`). Timer and edge-state triggers name theirs.
        """
        return ()

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """React to one event of this customer (default: nothing)."""

    def deadline(self, customer: CustomerState, key: str) -> datetime | None:
        """The current deadline of timer `key`, or None when it is not armed."""
        return None

    def fire(self, ctx: RuleContext, key: str, deadline: datetime) -> None:
        """Timer `key` reached its deadline."""
        raise NotImplementedError

    def emit(
        self,
        ctx: RuleContext,
        triggered_at: datetime,
        event_id: str,
        timer: bool = False,
        **attributes: Any,
    ) -> None:
        """Append one candidate of this rule for the current customer (none while paused)."""
        if self.paused:
            return
        ctx.out.append(
            Candidate(
                rule_id=self.rule_id,
                trigger=self.name,
                campaign=self.campaign,
                customer_id=ctx.customer_id,
                triggered_at=triggered_at,
                event_id=event_id,
                attributes=attributes,
                timer=timer,
            )
        )
