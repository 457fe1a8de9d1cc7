"""`follow_up` (journeys, issue 12 section 3): nothing happened after an earlier offer.

```yaml
- {rule_id: wm-second-touch, trigger: follow_up, campaign: wealth-second-touch,
   after: {campaign: wealth-welcome, outcome: sent}, within: 3d}
```

The engine sees the policy's own `sent` decisions as `SentOffer`s of the
customer (`Engine.feedback`, fed by the one driver right after the policy
returns them, docs/engine.md "Feedback"). Each one of `after.campaign` arms a
timer at `send_at + within`, keyed by the earlier offer's id. It is cancelled
by a later event of the customer that matches `unless` (by default a
conversion carrying the earlier `offer_id` or of the earlier offer's
`product`); any conversion also ends every pending follow-up of that customer
for its product. Otherwise it fires with `event_id` = the earlier offer's id,
and the candidate goes through the whole policy like any other.

A follow-up of its own campaign would loop; such a rule needs `max_steps`,
and the step count travels in the offer's attributes (`journey_step`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import RuleBase, RuleContext, Trigger
from .candidate import Candidate
from .durations import Duration, format_duration
from .events import Event
from .filters import EventFilter
from .state import CustomerState, RuleState

if TYPE_CHECKING:
    from .ruleset import RuleSet

# A sent offer is fed back at most this long before its send_at (a deferred offer
# or a lead waiting for a working day): the state must outlive send_at + within.
MAX_SEND_LAG = timedelta(days=31)


class SentOffer(NamedTuple):
    """A `sent` decision as the engine sees it: an event of the customer, never from the wire."""

    customer_id: str
    campaign_id: str
    offer_id: str
    send_at: datetime
    product: str | None
    step: int  # 0 for a first offer; a follow-up's offer carries its own step


def sent_offer(
    c: Candidate, campaign_id: str, offer_id: str, send_at: datetime, product: str | None
) -> SentOffer:
    """The engine's view of candidate `c` sent as `offer_id` (a follow-up carries its step)."""
    step = int(c.attributes.get("journey_step", 0)) if c.trigger == "follow_up" else 0
    return SentOffer(c.customer_id, campaign_id, offer_id, send_at, product, step)


class After(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    campaign: str
    outcome: Literal["sent"] = "sent"


class FollowUpRule(RuleBase):
    trigger: Literal["follow_up"]
    after: After
    within: Duration
    unless: EventFilter | None = None
    max_steps: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _bounded(self) -> FollowUpRule:
        if self.after.campaign == self.campaign and self.max_steps is None:
            raise ValueError("a follow-up of its own campaign needs max_steps (it would loop)")
        return self


class Pending(NamedTuple):
    deadline: datetime
    product: str | None
    step: int


class FollowUpState(RuleState):
    """The follow-ups that wait, by the earlier offer's id."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[str, Pending] = {}


class FollowUp(Trigger[FollowUpState]):
    """State: `FollowUpState` while follow-ups wait; None when none does."""

    name = "follow_up"
    event_types = frozenset({"transaction", "app", "conversion"})

    def __init__(self, rule: FollowUpRule, index: int, ruleset: RuleSet) -> None:
        super().__init__(rule, index, ruleset)
        self.after = rule.after.campaign
        self.within = rule.within
        self.label = format_duration(rule.within)
        self.unless = rule.unless.compile() if rule.unless is not None else None
        self.max_steps = rule.max_steps
        if self.unless is None:
            self.event_types = frozenset({"conversion"})

    @property
    def horizon(self) -> timedelta:
        return self.within + MAX_SEND_LAG

    def timing(self) -> tuple[Any, ...]:
        """Pending deadlines are `send_at + within`: a new `within` moves them (`adopt`)."""
        return (self.within,)

    def on_sent(self, ctx: RuleContext, offer: SentOffer) -> None:
        """Arm a follow-up of this earlier offer, unless the journey is at its last step."""
        if offer.campaign_id != self.after or not self.admits(ctx):
            return
        if self.max_steps is not None and offer.step >= self.max_steps:
            return
        state = self.state_of(ctx.customer)
        if state is None:
            state = ctx.customer.rule_states[self.index] = FollowUpState()
        deadline = offer.send_at + self.within
        state.pending[offer.offer_id] = Pending(deadline, offer.product, offer.step)
        ctx.arm(self.index, offer.offer_id, deadline)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        state = self.state_of(ctx.customer)
        if state is None:
            return
        pending = state.pending
        for offer_id, entry in list(pending.items()):
            if self._cancels(event, offer_id, entry):
                del pending[offer_id]
        if not pending:
            ctx.customer.rule_states[self.index] = None

    def _cancels(self, event: Event, offer_id: str, entry: Pending) -> bool:
        if event.type == "conversion" and (
            event.offer_id == offer_id or (entry.product and event.product == entry.product)
        ):
            return True  # a conversion ends the journey for its product, whatever `unless` says
        return self.unless is not None and self.unless(event)

    def adopt(
        self, old: Trigger[FollowUpState], state: FollowUpState | None
    ) -> FollowUpState | None:
        """Pending follow-ups keep their earlier offer; deadlines follow a new `within`."""
        if state is None or not isinstance(old, FollowUp) or old.within == self.within:
            return state
        shift = self.within - old.within
        moved = FollowUpState()
        moved.pending = {
            k: e._replace(deadline=e.deadline + shift) for k, e in state.pending.items()
        }
        return moved

    def deadline(self, customer: CustomerState, key: str) -> datetime | None:
        state = self.state_of(customer)
        entry = state.pending.get(key) if state is not None else None
        return entry.deadline if entry else None

    def fire(self, ctx: RuleContext, key: str, deadline: datetime) -> None:
        state = self.state_of(ctx.customer)
        entry = state.pending.pop(key, None) if state is not None else None
        if state is None or entry is None:
            return  # never: the engine fires only timers whose deadline() is set
        if not state.pending:
            ctx.customer.rule_states[self.index] = None
        self.emit(ctx, deadline, key, timer=True, journey_step=entry.step + 1, within=self.label)
