"""Classifying a rules change rule by rule (issue 10; docs/rollout.md says what carries over)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from keymoment.config import RulesFile
from keymoment.rollout.diff import diff, refusals

CAMPAIGNS = [
    {"campaign_id": "c", "offer_code": "C", "channels": ["sms"]},
    {"campaign_id": "d", "offer_code": "D", "channels": ["sms"]},
]
RULES = [
    {"rule_id": "big", "trigger": "large_deposit", "campaign": "c", "min_amount": 1000},
    {"rule_id": "win", "trigger": "window_threshold", "campaign": "c", "window": "24h",
     "value": 3, "filter": {"type": "app", "action": "page_view"}},
    {"rule_id": "quiet", "trigger": "dormancy", "campaign": "c"},
]  # fmt: skip


def rules(changes: dict[str, dict[str, Any]] | None = None, version: int = 2, **top: Any):
    body = [dict(r, **(changes or {}).get(r["rule_id"], {})) for r in RULES]
    body = [r for r in body if not r.get("gone")]
    extra = top.pop("extra", [])
    return RulesFile.model_validate(
        {"version": version, "rules": body + extra, "campaigns": CAMPAIGNS, **top}
    )


def kinds(old: RulesFile, new: RulesFile) -> dict[str, str]:
    return {r.rule_id: r.kind for r in diff(old, new).rules}


def test_each_kind_of_change_is_named():
    """thresholds / widened / narrowed / fresh (trigger, filter) / added / removed."""
    old = rules(version=1)
    assert kinds(old, rules({"big": {"min_amount": 5000}})) == {
        "big": "thresholds", "win": "unchanged", "quiet": "unchanged"
    }  # fmt: skip
    assert kinds(old, rules({"win": {"window": "48h"}}))["win"] == "widened"
    assert kinds(old, rules({"big": {"lookback": "30d"}}))["big"] == "narrowed"
    assert kinds(old, rules({"win": {"filter": {"type": "app", "action": "login"}}}))["win"] == (
        "fresh"
    )
    assert kinds(old, rules({"quiet": {"trigger": "reactivation"}}))["quiet"] == "fresh"
    new = rules({"quiet": {"gone": True}}, extra=[
        {"rule_id": "back", "trigger": "reactivation", "campaign": "d"}
    ])  # fmt: skip
    assert kinds(old, new) == {
        "big": "unchanged", "win": "unchanged", "back": "added", "quiet": "removed"
    }  # fmt: skip


def test_a_changed_parameter_is_listed_with_old_and_new_values():
    """The audit shows each changed parameter as (old, new), in the file's own terms."""
    change = diff(rules(version=1), rules({"big": {"min_amount": 5000, "lookback": "120d"}}))
    big = next(r for r in change.rules if r.rule_id == "big")
    assert big.changes["min_amount"] == ("1000", "5000")
    assert big.changes["lookback"][0] != big.changes["lookback"][1]
    assert big.kind == "widened"


def test_carry_maps_new_positions_to_old_ones_for_what_keeps_state():
    """Reordered, fresh and added rules: only carried rules appear, by position."""
    old = rules(version=1)
    reordered = RulesFile.model_validate(
        {
            "version": 2,
            "campaigns": CAMPAIGNS,
            "rules": [
                RULES[2],
                dict(RULES[1], filter={"type": "app", "action": "login"}),
                {"rule_id": "new", "trigger": "dormancy", "campaign": "d"},
                RULES[0],
            ],
        }
    )
    assert diff(old, reordered).carry == {0: 2, 3: 0}


def test_sections_other_than_rules_are_listed():
    """A campaign or cap change is named as a changed section."""
    old = rules(version=1)
    capped = rules(caps=[{"id": "any", "scope": "customer", "limit": 1, "window": "day"}])
    assert list(diff(old, capped).sections) == ["caps"]
    assert diff(old, rules(version=1)).identical


def test_salary_settings_that_shape_series_make_salary_rules_fresh():
    """min_occurrences changed: salary series restart, salary rules start fresh."""
    body = [{"rule_id": "pay", "trigger": "salary_credit", "campaign": "c"}]
    old = RulesFile.model_validate({"version": 1, "rules": body, "campaigns": CAMPAIGNS})
    new = RulesFile.model_validate(
        {"version": 2, "rules": body, "campaigns": CAMPAIGNS, "salary": {"min_occurrences": 2}}
    )
    change = diff(old, new)
    assert change.reset_salary and change.by_kind("fresh") == ["pay"] and change.carry == {}


def test_a_version_not_higher_or_a_new_lateness_is_refused():
    """Version 2 over 2 is refused; so is a change of allowed_lateness, with one line each."""
    assert refusals(rules(version=2), rules(version=2)) == [
        "version: 2 is not higher than the version in force (2)"
    ]
    late = rules(version=3, engine={"allowed_lateness": "1h"})
    assert [p.split(":")[0] for p in refusals(rules(version=2), late)] == [
        "engine.allowed_lateness"
    ]
    assert refusals(rules(version=2), rules(version=3)) == []
    assert timedelta(0) == rules().engine.allowed_lateness
