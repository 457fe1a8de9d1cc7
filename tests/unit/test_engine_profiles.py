"""Which engines read customer profiles at all (`Engine.reads_profiles`).

A driver whose engine reads none passes no profile per event (flows/shard.py): the
lookup in a dict of every customer was a cache miss or two per event for nothing.
So a rule that says it reads none must never touch one, whatever the events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.triggers.engine import Engine
from keymoment.triggers.ruleset import RuleSet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE, FOUR = ROOT / "examples" / "rules.yaml", ROOT / "bench" / "four_rules.yaml"


class Untouchable:
    """A profile that fails the test on any use."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"a rule that reads no profile read profile.{name}")

    def __bool__(self) -> bool:
        raise AssertionError("a rule that reads no profile tested it")


def without_profile_readers(rules: RuleSet) -> RuleSet:
    """The example rules that neither filter customers nor read profiles themselves."""
    kept = [
        r for r in rules.rules if r.customer_filter is None and r.trigger != "balance_milestone"
    ]
    return rules.model_copy(update={"rules": kept})


def test_only_customer_filters_and_balance_milestones_read_profiles():
    assert Engine(load_rules(FOUR)).reads_profiles is False
    assert Engine(load_rules(EXAMPLE)).reads_profiles is True  # a filter and a milestone
    example = load_rules(EXAMPLE)
    for kept in ("window_threshold", "balance_milestone"):
        one = [r for r in example.rules if r.trigger == kept][:1]
        assert Engine(example.model_copy(update={"rules": one})).reads_profiles is True


@pytest.mark.parametrize("seed", [1, 2])
def test_an_engine_that_reads_no_profiles_never_touches_one(seed):
    """The generator's stream (every trigger fires) with a profile no rule may use."""
    rules = without_profile_readers(load_rules(EXAMPLE))
    assert {r.trigger for r in rules.rules} >= {"dormancy", "absence", "salary_missed"}
    plain, poisoned = Engine(rules), Engine(rules)
    assert poisoned.reads_profiles is False
    gen = Generator(seed=seed, customers=60, days=120)
    fired = 0
    for raw in gen.iter_bytes():
        event = decode(raw, "gen")
        if isinstance(event, DeadLetter):
            continue
        expected = plain.feed(event, None)
        assert poisoned.feed(event, Untouchable()) == expected  # type: ignore[arg-type]
        fired += len(expected.candidates)
    assert fired > 0
