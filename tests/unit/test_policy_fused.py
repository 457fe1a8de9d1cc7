"""The policy's fused one-candidate path (`_one`) decides exactly what its general path does.

`RulesContactPolicy.decide` takes `_one` for a call of one candidate, and for a call
whose candidates are all of different customers (timers due together); everything
else goes through `_run`. Both must give the same decisions, in the same order, and
leave the same contact history: here on `examples/rules.yaml` (caps, holdouts, A/B
variants, send hours, an RM lead desk with capacity, a call centre), with random
sequences of calls, one policy fused and one forced onto the general path.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.config import load_rules
from keymoment.connectors.customers import parse_profile
from keymoment.connectors.generator import Generator
from keymoment.policy import build_policy
from keymoment.state import MemoryCapStore
from keymoment.triggers.candidate import Candidate
from tests.unit.test_policy_support import T0, fixed_clock

RULES = load_rules(Path(__file__).resolve().parents[2] / "examples" / "rules.yaml")
PROFILES = {
    p.customer_id: p
    for p in (parse_profile(d) for d in Generator(seed=3, customers=12, days=30).profiles())
}
CUSTOMERS = sorted(PROFILES)

# one call: minutes after the previous call, then (rule index, customer index, timer, hours
# it waited: a candidate decided later than it triggered, as a parked or late one is) of each
calls = st.lists(
    st.tuples(
        st.integers(0, 900),
        st.lists(
            st.tuples(
                st.integers(0, len(RULES.rules) - 1),
                st.integers(0, 11),
                st.booleans(),
                st.sampled_from([0, 0, 0, 1, 30, 200]),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda x: x[1],  # several candidates of a call: different customers
        ),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(calls)
def test_the_fused_path_decides_what_the_general_path_decides(sequence):
    fused, general = (build_policy(RULES, store=MemoryCapStore(), clock=fixed_clock) for _ in "ab")
    assert fused._fused  # the in-process store and list files: the fused path is taken
    general._fused = False
    at, n = T0, 0
    for minutes, members in sequence:
        at += timedelta(minutes=minutes)
        batch = []
        for rule_index, who, timer, waited in members:
            rule, n, then = RULES.rules[rule_index], n + 1, at - timedelta(hours=waited)
            batch.append(
                Candidate(rule.rule_id, rule.trigger, rule.campaign, CUSTOMERS[who], then,
                          f"E{n}", timer=timer)
            )  # fmt: skip
        got = [d.log_record() for d in fused.decide(batch, PROFILES, at)]
        assert got == [d.log_record() for d in general.decide(batch, PROFILES, at)]
    assert fused.snapshot() == general.snapshot()
