"""Human channels with capacity (issue 12, section 1): who gets a lead, when, and in which order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.policy import build_policy
from keymoment.state import MemoryCapStore
from keymoment.triggers.events import CustomerProfile
from tests.unit.test_policy_support import campaign, candidate, fixed_clock, rules_file

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # 2026-03-02 is a Monday
RM_TASK = {
    "human": True,
    "capacity": {"per": "rm", "limit": 2, "window": "day"},
    "working_hours": "09:00-18:00",
    "sla": "2d",
    "fallback": "branch",
}


def rm_rules(limit: int = 2, **campaign_fields):  # type: ignore[no-untyped-def]
    """Campaigns `hi` (priority 9) and `lo` (priority 1), both only on `rm_task`."""
    spec = dict(RM_TASK, capacity={"per": "rm", "limit": limit, "window": "day"})
    fields = {"channels": ["rm_task"], "ttl": "5d", **campaign_fields}
    return rules_file(
        [campaign("hi", priority=9, **fields), campaign("lo", priority=1, **fields)],
        channels={"rm_task": spec},
    )


def customer(cid: str, rm: str | None = "R1", branch: str | None = "B1") -> CustomerProfile:
    return CustomerProfile(customer_id=cid, consent={"rm_task": True}, rm_id=rm, branch=branch)


def policy_for(rules):  # type: ignore[no-untyped-def]
    return build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)


def test_inside_working_hours_a_lead_goes_at_once_with_its_owner_and_sla():
    """At 10:00 on a Monday the RM takes the lead now; the offer names the RM and due_at."""
    policy = policy_for(rm_rules())
    at = MONDAY + timedelta(hours=10)
    [d] = policy.decide([candidate("r-hi", "hi", "C1", at)], {"C1": customer("C1")}, at)
    assert (d.outcome, d.reason, d.channel, d.send_at) == ("sent", "admitted", "rm_task", at)
    offer = d.offer()
    assert (offer["rm_id"], offer["pool"], offer["due_at"]) == ("R1", None, "2026-03-04T10:00:00Z")


def test_a_full_day_makes_the_lead_wait_for_the_next_working_day():
    """The third lead of a day for an RM with capacity 2 waits, then goes at 09:00 the next day."""
    policy = policy_for(rm_rules())
    at = MONDAY + timedelta(hours=10)
    cands = [candidate("r-hi", "hi", f"C{i}", at) for i in range(3)]
    profs = {c.customer_id: customer(c.customer_id) for c in cands}
    out = policy.decide(cands, profs, at)
    assert [d.outcome for d in out] == ["sent", "sent"] and policy.pending == 1
    later = policy.retry_pending(MONDAY + timedelta(days=1, hours=9))
    assert [(d.outcome, d.reason, d.send_at) for d in later] == [
        ("sent", "allocated", MONDAY + timedelta(days=1, hours=9))
    ]


def test_overnight_leads_are_allocated_by_priority_then_age_at_the_day_start():
    """Leads from the night compete at 09:00: priority first, then the older one."""
    policy = policy_for(rm_rules(limit=2))
    night = MONDAY + timedelta(hours=20)
    cands = [
        candidate("r-lo", "lo", "C1", night),
        candidate("r-hi", "hi", "C2", night + timedelta(hours=2)),
        candidate("r-lo", "lo", "C3", night + timedelta(hours=1)),
    ]
    profs = {c.customer_id: customer(c.customer_id) for c in cands}
    for c in cands:
        assert policy.decide([c], profs, c.triggered_at) == []
    out = policy.retry_pending(MONDAY + timedelta(days=1, hours=9))
    assert sorted(d.candidate.customer_id for d in out if d.outcome == "sent") == ["C1", "C2"]


def test_a_lead_past_its_limit_ends_not_allocated():
    """With max_delay 1d a lead that loses the Tuesday allocation cannot wait for Wednesday."""
    policy = policy_for(rm_rules(limit=1, max_delay="1d"))
    night = MONDAY + timedelta(hours=20)
    cands = [candidate("r-hi", "hi", "C1", night), candidate("r-lo", "lo", "C2", night)]
    profs = {c.customer_id: customer(c.customer_id) for c in cands}
    assert policy.decide(cands, profs, night) == []
    out = policy.retry_pending(MONDAY + timedelta(days=3))
    assert {d.candidate.customer_id: (d.outcome, d.reason) for d in out} == {
        "C1": ("sent", "allocated"),
        "C2": ("expired", "not_allocated"),
    }
    assert out[1].offer()["rm_id"] == "R1"


def test_a_full_day_without_time_to_wait_tries_the_next_channel_then_is_capped():
    """Capacity full and no working day within max_delay: sms takes it, or `capacity:rm_task`."""
    rules = rules_file(
        [campaign("hi", channels=["rm_task", "sms"], max_delay="2h"), campaign("solo",
         channels=["rm_task"], max_delay="2h")],
        channels={"rm_task": dict(RM_TASK, capacity={"per": "rm", "limit": 1})},
    )  # fmt: skip
    policy = policy_for(rules)
    at = MONDAY + timedelta(hours=10)
    both = CustomerProfile(customer_id="C2", consent={"rm_task": True, "sms": True}, rm_id="R1")
    profs = {"C1": customer("C1"), "C2": both, "C3": customer("C3")}
    out = policy.decide(
        [
            candidate("r-hi", "hi", "C1", at),
            candidate("r-hi", "hi", "C2", at),
            candidate("r-solo", "solo", "C3", at),
        ],
        profs,
        at,
    )
    assert [(d.outcome, d.channel, d.reason) for d in out] == [
        ("sent", "rm_task", "admitted"),
        ("sent", "sms", "admitted"),
        ("capped", None, "capacity:rm_task"),
    ]


def test_customers_without_an_rm_go_to_their_branch_pool_or_on():
    """No rm_id: the branch pool takes it (fallback: branch); no branch either: no_channel."""
    policy = policy_for(rm_rules())
    at = MONDAY + timedelta(hours=11)
    profs = {"C1": customer("C1", rm=None), "C2": customer("C2", rm=None, branch=None)}
    out = policy.decide(
        [candidate("r-hi", "hi", "C1", at), candidate("r-hi", "hi", "C2", at)], profs, at
    )
    assert [(d.outcome, d.reason) for d in out] == [
        ("sent", "admitted"),
        ("no_channel", "no_owner"),
    ]
    assert out[0].offer()["pool"] == "branch:B1"


def test_holidays_and_weekends_are_not_working_days(tmp_path):
    """A Friday-evening lead waits past the weekend and a Monday holiday to Tuesday 09:00."""
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("# bank holidays\n2026-03-09\n")
    spec = dict(RM_TASK, holidays=str(holidays))
    rules = rules_file([campaign("hi", channels=["rm_task"], ttl="7d")], channels={"rm_task": spec})
    policy = policy_for(rules)
    friday = MONDAY + timedelta(days=4, hours=19)
    assert (
        policy.decide([candidate("r-hi", "hi", "C1", friday)], {"C1": customer("C1")}, friday) == []
    )
    [d] = policy.retry_pending(MONDAY + timedelta(days=9))
    assert d.send_at == MONDAY + timedelta(days=8, hours=9)


def test_waiting_leads_survive_a_snapshot():
    """A lead waiting overnight is in the policy snapshot and allocated after a restore."""
    rules = rm_rules()
    first = policy_for(rules)
    night = MONDAY + timedelta(hours=22)
    assert first.decide([candidate("r-hi", "hi", "C1", night)], {"C1": customer("C1")}, night) == []
    second = policy_for(rules)
    second.restore(first.snapshot())
    [d] = second.retry_pending(MONDAY + timedelta(days=1, hours=9, minutes=5))
    assert (d.outcome, d.send_at) == ("sent", MONDAY + timedelta(days=1, hours=9))


def test_a_human_channel_needs_capacity_and_working_hours_that_do_not_wrap():
    """`human: true` without capacity, or with working hours past midnight, is refused."""
    with pytest.raises(ValueError, match="capacity"):
        rules_file([campaign("hi")], channels={"rm_task": {"human": True}})
    with pytest.raises(ValueError, match="working_hours"):
        rules_file(
            [campaign("hi")], channels={"rm_task": dict(RM_TASK, working_hours="20:00-02:00")}
        )


# -- properties ---------------------------------------------------------------------------------
lead_strategy = st.lists(
    st.tuples(
        st.integers(0, 7 * 24 * 60 - 1),  # minute of the week it fires
        st.sampled_from(["hi", "lo"]),
        st.sampled_from(["R1", "R2", "R3"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(leads=lead_strategy, limit=st.integers(1, 3), max_delay=st.sampled_from(["1d", "2d", "5d"]))
def test_capacity_hours_and_rank_hold_whatever_the_arrivals(leads, limit, max_delay):
    """No RM over capacity on a day; every lead inside working hours; losers never outrank winners.

    The policy is driven like the live flow: candidates in time order, a tick every hour.
    """
    policy = policy_for(rm_rules(limit=limit, max_delay=max_delay))
    arrivals = sorted(
        (MONDAY + timedelta(minutes=m), camp, rm, i) for i, (m, camp, rm) in enumerate(leads)
    )
    profs = {f"C{i}": customer(f"C{i}", rm=rm) for _, _, rm, i in arrivals}
    decided, tick = [], MONDAY
    for at, camp, _, i in arrivals:
        while tick <= at:
            decided += [(d, tick) for d in policy.retry_pending(tick)]
            tick += timedelta(hours=1)
        decided += [
            (d, at) for d in policy.decide([candidate(f"r-{camp}", camp, f"C{i}", at)], profs, at)
        ]
    while policy.pending:
        decided += [(d, tick) for d in policy.retry_pending(tick)]
        tick += timedelta(hours=1)
    assert len(decided) == len(arrivals)
    sent = [d for d, _ in decided if d.outcome == "sent"]
    per_day = Counter((d.offer()["rm_id"], d.send_at.date()) for d in sent)  # type: ignore[union-attr]
    assert max(per_day.values(), default=0) <= limit
    for d in sent:
        local = d.send_at.time()  # type: ignore[union-attr]
        assert d.send_at.weekday() < 5 and time(9) <= local < time(18)  # type: ignore[union-attr]
    for loser, at in decided:
        if loser.reason != "not_allocated":
            continue
        day = max(t for t in (at - timedelta(hours=h) for h in range(0, 80)) if t.weekday() < 5
                  and t.hour == 9 and t.minute == 0)  # fmt: skip
        rm = loser.offer()["rm_id"]
        winners = [d for d in sent if d.offer()["rm_id"] == rm and d.send_at == day]
        assert len(winners) == limit
        lost_priority = 9 if loser.campaign_id == "hi" else 1
        assert all((9 if w.campaign_id == "hi" else 1) >= lost_priority for w in winners)
