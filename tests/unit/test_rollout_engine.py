"""A rule set switched mid-stream against two plain replays (issue 10, docs/rollout.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_properties import ALL_RULES, SETTINGS, streams
from test_triggers_support import T0, app, brief, run

from keymoment.config import RulesFile
from keymoment.rollout.diff import diff
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import Event
from keymoment.triggers.switch import switched

TICK = timedelta(microseconds=1)
CAMPAIGN = {"campaign_id": "c", "offer_code": "C", "channels": ["sms"]}


def rules_file(rules: list[dict[str, Any]], version: int = 1) -> RulesFile:
    return RulesFile.model_validate({"version": version, "rules": rules, "campaigns": [CAMPAIGN]})


BASE = [r.model_dump(mode="json", exclude_defaults=True) for r in ALL_RULES.rules]


def with_rollout(old: RulesFile, new: RulesFile, events: list[Event], at: datetime) -> list:
    """Replay on `old`, switching to `new` when the watermark reaches `at` (as the shard does)."""
    engine, out, done = Engine(old), [], False
    for event in events:
        if not done and event.occurred_at >= at:
            out += engine.advance(at - TICK)
            engine, done = switched(engine, new, diff(old, new).carry), True
        out += engine.feed(event).candidates
    return out


def spliced(old: list[Candidate], new: list[Candidate], at: datetime) -> list[Candidate]:
    return [c for c in old if c.triggered_at < at] + [c for c in new if c.triggered_at >= at]


@st.composite
def threshold_changes(draw):
    """The base rules with thresholds (and only thresholds) redrawn, one rule maybe removed."""
    rules = [dict(r) for r in BASE]
    by_id = {r["rule_id"]: r for r in rules}
    by_id["big"].update(
        min_amount=draw(st.sampled_from([500, 1000, 5000])),
        min_history=draw(st.integers(0, 3)),
        multiple=draw(st.sampled_from([1, 2, 5])),
    )
    by_id["wealth"].update(
        value=draw(st.sampled_from([1, 2, 3])), op=draw(st.sampled_from(["gte", "gt"]))
    )
    by_id["pay"]["only_first"] = draw(st.booleans())
    removed = draw(st.sampled_from([None, "big", "dorm", "loan", "wealth", "miss"]))
    return [r for r in rules if r["rule_id"] != removed], removed


@SETTINGS
@given(streams(max_size=40), threshold_changes(), st.data())
def test_a_thresholds_rollout_equals_old_before_and_new_from_the_switch(events, change, data):
    """Candidates before T are the old version's, from T on the new version's; removed: none."""
    new_rules, removed = change
    old, new = rules_file(BASE, 1), rules_file(new_rules, 2)
    at = data.draw(
        st.sampled_from([e.occurred_at for e in events] + [events[-1].occurred_at + TICK])
    )
    got = with_rollout(old, new, events, at)
    assert brief(got) == brief(spliced(run(old, events), run(new, events), at))
    assert not [c for c in got if c.rule_id == removed and c.triggered_at >= at]


def test_a_removed_timer_rule_never_fires_after_the_switch():
    """A pending absence timer of a removed rule is dropped with the rule."""
    old = rules_file(BASE, 1)
    new = rules_file([r for r in BASE if r["rule_id"] != "loan"], 2)
    start = app("s", T0, "apply_start", "loan", customer="a")
    later = app("l", T0 + timedelta(minutes=5), "logout", None, customer="a")
    got = with_rollout(old, new, [start, later], T0 + timedelta(minutes=5))
    engine = switched(Engine(old), new, diff(old, new).carry)
    assert [c.rule_id for c in got if c.rule_id == "loan"] == []
    assert engine.advance(T0 + timedelta(days=1)) == []


def test_a_shortened_timer_comes_due_at_its_new_deadline():
    """Absence `within` cut from 30m to 10m: the pending start fires at start + 10m."""
    old = rules_file(BASE, 1)
    shorter = [dict(r, within="10m") if r["rule_id"] == "loan" else r for r in BASE]
    new = rules_file(shorter, 2)
    engine = Engine(old)
    engine.feed(app("s", T0, "apply_start", "loan", customer="a"))
    engine.advance(T0 + timedelta(minutes=1))
    engine = switched(engine, new, diff(old, new).carry)
    fired = engine.advance(T0 + timedelta(minutes=11))
    assert [(c.rule_id, c.triggered_at) for c in fired] == [("loan", T0 + timedelta(minutes=10))]


def test_a_changed_filter_starts_fresh():
    """A window rule with a new filter forgets the matches counted under the old one."""
    old = rules_file(BASE, 1)
    refiltered = [
        dict(r, filter={"type": "app", "action": "page_view"}) if r["rule_id"] == "wealth" else r
        for r in BASE
    ]
    new = rules_file(refiltered, 2)
    assert diff(old, new).by_kind("fresh") == ["wealth"]
    engine = Engine(old)
    engine.feed(app("v1", T0, "page_view", "wealth", customer="a"))
    engine = switched(engine, new, diff(old, new).carry)
    engine.settle_all()  # the customer as its next event finds it
    index = [r.rule_id for r in new.rules].index("wealth")
    assert engine.customers["a"].rule_states[index] is None
    fed = engine.feed(app("v2", T0 + timedelta(minutes=1), "page_view", "wealth", customer="a"))
    assert [c.rule_id for c in fed.candidates] == []  # one match in the fresh window, not two


def test_a_thresholds_only_switch_hands_the_customers_over_untouched():
    """min_amount changed: the same heap and states (O(rules)); a window value: each re-read."""
    old = rules_file(BASE, 1)
    engine = Engine(old)
    engine.feed(app("v1", T0, "page_view", "wealth", customer="a"))
    engine.feed(app("s1", T0, "apply_start", "loan", customer="b"))
    richer = rules_file([dict(r, min_amount=9000) if r["rule_id"] == "big" else r for r in BASE], 2)
    fast = switched(engine, richer, diff(old, richer).carry)
    assert fast.customers is engine.customers and fast._heap is engine._heap
    valued = rules_file([dict(r, value=1) if r["rule_id"] == "wealth" else r for r in BASE], 3)
    full = switched(fast, valued, diff(richer, valued).carry)
    assert full._heap is not fast._heap and full._deferred is not None  # each on first touch
    full.settle_all()
    assert len(full._heap) == len(fast._heap) + 1  # and the deferral's marker
