"""Switch a running engine to a new rule set, keeping what carries over (docs/rollout.md).

Pure: the caller says which new rule adopts which old rule's state (`carry`,
new index -> old index, computed from the two rules files by
`keymoment.rollout.diff`); everything else about the change is read here.

- A carried rule keeps its per-customer rule state (through its trigger's
  `adopt`) and its pending timers; its
  timers are re-read under the new parameters, so a shortened timer comes
  due at its new, earlier deadline (which may already be behind the
  watermark: it then fires at the next advance, with that deadline as its
  `triggered_at`).
- A rule not in `carry` (new, or reshaped by a new trigger or filter) starts
  with no rule state; a removed rule's states and timers are dropped, so none
  of them ever fires.
- Shared state (dedupe ids, activity, salary series) stays; `reset_salary`
  clears the salary series when the salary settings that shape them changed.

A switch that re-reads the states is *deferred* (`engine.Deferred`): each
customer is reshaped when the engine first reads it, and its timers queued
from its `queued` map, which holds the earliest entry of every pending timer
(engine module docstring); the old heap is kept only to know, by its entries
shifted by the most any deadline moves earlier (`_lag`), when each customer
must be reshaped at the latest. The switch itself then costs O(customers) in
C (one set of their ids) instead of a Python pass over every state. A trigger
whose deadlines move in ways `_lag` does not know takes the full pass.

An incremental snapshot chain (flows/snapshots.py) asks `keeps_state` whether
a switch left every state as it was, and a restore from a chain that spans a
switch that did not re-applies its per-customer pass with `replay`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from .absence import Absence
from .base import Trigger
from .dormancy import Dormancy
from .engine import Deferred, Engine
from .follow_up import FollowUp
from .ruleset import RuleSet
from .salary_missed import SalaryMissed
from .state import CustomerState

# The timer triggers, by the parameter their deadlines are offset by (a customer's
# time plus it): a switch moves each pending deadline by the parameter's change.
_TIMER_LENGTHS: dict[type[Trigger[Any]], str] = {
    Dormancy: "inactive",
    Absence: "within",
    SalaryMissed: "delay",
    FollowUp: "within",
}


def switched(
    old: Engine, ruleset: RuleSet, carry: Mapping[int, int], reset_salary: bool = False
) -> Engine:
    """A new engine for `ruleset` on `old`'s watermark, customers and timers."""
    new = Engine(ruleset)
    new.watermark, new.dirty = old.watermark, old.dirty  # tracking changes, or not, goes on
    if _untouched(old, new, carry, reset_salary):
        new.customers, new._heap = old.customers, old._heap  # nothing to re-read: O(rules)
        new._evictions = old._evictions
        # A switch `old` deferred goes on: this one reshapes nothing it would not.
        new._deferred = old._deferred
        return new
    old.settle_all()  # an earlier deferred switch first: the rest of its full pass
    new.customers = old.customers
    lag = _lag(old, new, carry)
    if lag is None:
        _adapt(old, new, carry, reset_salary)
        new.rebuild_timers()
        return new
    adopted = {j: i for i, j in carry.items()}
    adapt = partial(_adapt_one, old, new, carry, adopted, reset_salary)
    stale = set(old.customers)
    new.defer(Deferred(old, adapt, stale, lag, dict(carry), reset_salary))
    return new


def resumed(new: Engine, plain: dict[str, Any]) -> Deferred:
    """A deferred switch again, from what a whole snapshot kept of it (`Deferred.plain`)."""
    old = Engine(plain["rules"])
    old.customers, old.watermark, old._heap = new.customers, new.watermark, plain["heap"]
    old._evictions.hours = plain["evictions"]
    carry = plain["carry"]
    adopted = {j: i for i, j in carry.items()}
    adapt = partial(_adapt_one, old, new, carry, adopted, plain["reset_salary"])
    return Deferred(old, adapt, plain["stale"], plain["lag"], carry, plain["reset_salary"])


def _lag(old: Engine, new: Engine, carry: Mapping[int, int]) -> timedelta | None:
    """The most any timer or eviction check of `new` comes due earlier than under `old`.

    None when a carried trigger has timers whose deadlines this module cannot
    bound (none today; such a switch takes the full pass).
    """
    lag = max(old.horizon - new.horizon, timedelta(0))
    for i, j in carry.items():
        before, after = old.triggers[j], new.triggers[i]
        if type(after).deadline is Trigger.deadline:
            continue  # no timers
        name = _TIMER_LENGTHS.get(type(after))
        if name is None or type(before) is not type(after):
            return None
        lag = max(lag, getattr(before, name) - getattr(after, name))
    return lag


def keeps_state(
    old: RuleSet, new: RuleSet, carry: Mapping[int, int], reset_salary: bool = False
) -> bool:
    """Whether `switched` from `old` to `new` hands every customer state over as it is."""
    return _untouched(Engine(old), Engine(new), carry, reset_salary)


def replay(
    customers: dict[str, CustomerState],
    old: RuleSet,
    new: RuleSet,
    carry: Mapping[int, int],
    reset_salary: bool = False,
) -> None:
    """What `switched` does to the customer states, in place, without building the heap.

    For a restore that replays a switch between two snapshots (flows/snapshots.py):
    it rebuilds the timers once, after its last part.
    """
    before, after = Engine(old), Engine(new)
    if not _untouched(before, after, carry, reset_salary):
        before.customers = customers
        _adapt(before, after, carry, reset_salary)


def _adapt(old: Engine, new: Engine, carry: Mapping[int, int], reset_salary: bool) -> None:
    """Every customer of `old` re-read for `new`'s rules: rule states and queued timers."""
    adopted = {j: i for i, j in carry.items()}  # old index -> new index
    for customer in old.customers.values():
        _adapt_one(old, new, carry, adopted, reset_salary, customer)


def _adapt_one(
    old: Engine,
    new: Engine,
    carry: Mapping[int, int],
    adopted: Mapping[int, int],
    reset_salary: bool,
    customer: CustomerState,
) -> None:
    """One customer of `old` re-read for `new`'s rules (`adopted`: old index -> new index)."""
    _adopt_rules(old, new, customer, carry, reset_salary)
    armed, customer.queued = customer.queued_items(), None
    for slot, deadline in armed:
        index, key = (slot, "") if isinstance(slot, int) else slot
        if index not in adopted:
            continue  # a removed or reshaped rule's timer: dropped
        index = adopted[index]
        current = new.triggers[index].deadline(customer, key)
        due = deadline if current is None else min(deadline, current)
        customer.queue((index, key) if key else index, due)  # the first of its slot


def _untouched(old: Engine, new: Engine, carry: Mapping[int, int], reset_salary: bool) -> bool:
    """Same rules in the same places, none of whose states or deadlines depend on what changed.

    The common thresholds-only change: `adopt` would return every state as it
    is and no deadline would move, so the customers and the heap are handed
    over as they are (a horizon that shrank still needs the full pass).
    """
    count = len(new.triggers)
    return (
        not reset_salary
        and len(old.triggers) == count
        and dict(carry) == {i: i for i in range(count)}
        and new.horizon >= old.horizon
        and all(
            type(a) is type(b) and a.timing() == b.timing()
            for a, b in zip(old.triggers, new.triggers, strict=True)
        )
    )


def _adopt_rules(
    old: Engine, new: Engine, customer: CustomerState, carry: Mapping[int, int], reset_salary: bool
) -> None:
    states = customer.rule_states
    customer.rule_states = [
        new.triggers[i].adopt(old.triggers[carry[i]], states[carry[i]]) if i in carry else None
        for i in range(len(new.triggers))
    ]
    if reset_salary:
        customer.payers = None
