"""`mode: shadow` and `mode: paused` on rules and campaigns (issue 10, docs/rollout.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keymoment.config import RulesFile
from keymoment.policy import build_policy
from keymoment.state import MemoryCapStore, cap_key
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import AppEvent
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)

DAILY = [{"id": "any", "scope": "customer", "limit": 1, "window": "day"}]


def _with_mode(rules: RulesFile, rule_id: str, mode: str) -> RulesFile:
    data = rules.model_dump()
    for rule in data["rules"]:
        if rule["rule_id"] == rule_id:
            rule["mode"] = mode
    return RulesFile.model_validate(data)


def _decide(rules, cands, store):  # type: ignore[no-untyped-def]
    policy = build_policy(rules, store=store, clock=fixed_clock)
    return policy.decide(cands, profiles(profile()), max(c.triggered_at for c in cands))


def test_a_shadow_candidate_is_decided_but_takes_no_slot_and_beats_nobody():
    """A higher-priority shadow rule ends `shadow`/`sent` on its channel; the live one wins."""
    rules = rules_file(
        [campaign("hi", priority=9), campaign("lo", priority=1)],
        rules=[("r-hi", "hi"), ("r-lo", "lo")],
        caps=[{"id": "any", "scope": "customer", "limit": 2, "window": "day"}],
    )
    rules = _with_mode(rules, "r-hi", "shadow")
    store = MemoryCapStore()
    cands = [candidate("r-hi", "hi", event_id="E1"), candidate("r-lo", "lo", event_id="E1")]
    out = {d.candidate.rule_id: d for d in _decide(rules, cands, store)}
    assert (out["r-lo"].outcome, out["r-lo"].reason) == ("sent", "admitted")
    hi = out["r-hi"]
    assert (hi.outcome, hi.reason, hi.channel, hi.send_at) == ("shadow", "sent", "sms", T0)
    assert [o for o, _ in store.slots(cap_key("C1", "any", ""))] == [out["r-lo"].offer_id]


def test_a_shadow_candidate_reports_the_cap_that_would_have_refused_it():
    """Once the live offer used the day's only slot, a later shadow candidate reads `capped:any`."""
    rules = _with_mode(rules_file([campaign("a"), campaign("b")], caps=DAILY), "r-b", "shadow")
    store = MemoryCapStore()
    first = _decide(rules, [candidate("r-a", "a")], store)
    later = candidate("r-b", "b", at=T0 + timedelta(hours=1))
    second = _decide(rules, [later], store)
    assert first[0].outcome == "sent"
    assert (second[0].outcome, second[0].reason, second[0].channel) == (
        "shadow",
        "capped:any",
        None,
    )


def test_a_lower_ranked_shadow_candidate_says_whom_it_would_have_lost_to():
    """Against a live winner of the same moment, the shadow verdict names that winner."""
    rules = rules_file(
        [campaign("hi", priority=9), campaign("lo", priority=1)],
        rules=[("r-hi", "hi"), ("r-lo", "lo")],
    )
    rules = _with_mode(rules, "r-lo", "shadow")
    cands = [candidate("r-hi", "hi", event_id="E1"), candidate("r-lo", "lo", event_id="E1")]
    out = {d.candidate.rule_id: d for d in _decide(rules, cands, MemoryCapStore())}
    assert out["r-hi"].outcome == "sent"
    assert (out["r-lo"].outcome, out["r-lo"].reason) == ("shadow", "arbitration_lost:r-hi")


def test_a_shadow_campaign_makes_all_its_rules_shadow():
    """`mode: shadow` on the campaign covers every rule feeding it."""
    rules = rules_file([campaign("a", mode="shadow")])
    out = _decide(rules, [candidate("r-a", "a")], MemoryCapStore())
    assert (out[0].outcome, out[0].reason) == ("shadow", "sent")
    assert rules.shadow_rules() == {"r-a"}


def _login(cid: str, at: datetime, n: int) -> AppEvent:
    return AppEvent(type="app", event_id=f"e{n}", customer_id=cid, occurred_at=at, action="login")


def test_a_paused_rule_keeps_its_state_and_emits_nothing():
    """Paused dormancy still tracks activity: unpaused at the same state, it fires on time."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    live = rules_file([campaign("a")])
    paused = _with_mode(live, "r-a", "paused")
    engine = Engine(paused)
    engine.feed(_login("C1", at, 1))
    assert engine.advance(at + timedelta(days=90)) == []
    assert engine.customers["C1"].last_activity_at == at  # the state was kept
    other = Engine(rules_file([campaign("a", mode="paused")]))
    other.feed(_login("C1", at, 1))
    assert other.advance(at + timedelta(days=90)) == []
    fresh = Engine(live)
    fresh.feed(_login("C1", at, 1))
    assert [c.rule_id for c in fresh.advance(at + timedelta(days=90))] == ["r-a"]


def test_the_report_keeps_shadow_candidates_out_of_the_arms_and_counts_them_apart():
    """A customer's earlier shadow candidate does not hide the live one that reached them."""
    from keymoment.commands.report import _shadow_line
    from keymoment.desk.uplift import first_exposures

    records = [
        {"campaign_id": "a", "customer_id": "C1", "triggered_at": "2026-03-01T00:00:00Z",
         "outcome": "shadow"},
        {"campaign_id": "a", "customer_id": "C1", "triggered_at": "2026-03-02T00:00:00Z",
         "outcome": "sent"},
    ]  # fmt: skip
    assert [o for _, o in first_exposures(records).values()] == ["sent"]
    assert _shadow_line(records).splitlines()[1].split() == ["a", "1"]
