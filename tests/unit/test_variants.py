"""A/B variants (issue 12, section 2): the documented draw, its shares, what a variant changes."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.config import RulesFile
from keymoment.policy import build_policy
from keymoment.policy.holdout import in_control
from keymoment.policy.variants import Variant, VariantBook, bounds, variant_bucket
from keymoment.state import MemoryCapStore
from tests.unit.test_policy_support import campaign, candidate, fixed_clock, profile, rules_file

AB = [
    {"id": "A", "weight": 0.5, "offer_code": "WM-A"},
    {"id": "B", "weight": 0.5, "offer_code": "WM-B", "channels": ["app_push"]},
]


def recomputed(campaign_id: str, customer_id: str) -> int:
    """The bucket as any other system would compute it from the issue's formula."""
    digest = hashlib.sha256(f"variant:{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10000


def test_bucket_is_the_documented_hash():
    """bucket = first 8 bytes of sha256("variant:" + campaign + ":" + customer), mod 10000."""
    for i in range(2000):
        assert variant_bucket("wm", f"C{i}") == recomputed("wm", f"C{i}")


def test_variants_take_consecutive_ranges_in_file_order():
    """Weights 0.3/0.2/0.5 give buckets [0,3000) to A, [3000,5000) to B, the rest to C."""
    arms = [Variant(id=v, weight=w) for v, w in (("A", 0.3), ("B", 0.2), ("C", 0.5))]
    assert bounds(arms) == (3000, 5000, 10000)
    book = VariantBook([_campaign(arms)])
    for i in range(3000):
        b = recomputed("wm", f"C{i}")
        expected = "A" if b < 3000 else "B" if b < 5000 else "C"
        assert book.assign("wm", f"C{i}").id == expected  # type: ignore[union-attr]


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(1, 20), min_size=2, max_size=5),
    salt=st.text("abcdefxyz0123456789", min_size=1, max_size=6),
)
def test_variant_shares_are_within_four_sigma_of_their_weights(weights, salt):
    """Over 4000 customers each variant's share is within 4 binomial sigma of its weight."""
    total = sum(weights)
    shares = [w / total for w in weights]
    shares = [round(s, 4) for s in shares[:-1]]
    shares.append(round(1 - sum(shares), 4))
    if shares[-1] <= 0:
        return
    arms = [Variant(id=f"V{i}", weight=s) for i, s in enumerate(shares)]
    book = VariantBook([_campaign(arms, campaign_id=f"c-{salt}")])
    n = 4000
    counts = {a.id: 0 for a in arms}
    for i in range(n):
        counts[book.assign(f"c-{salt}", f"K{i}").id] += 1  # type: ignore[union-attr]
    for arm in arms:
        sigma = math.sqrt(n * arm.weight * (1 - arm.weight))
        assert abs(counts[arm.id] - n * arm.weight) <= 4 * sigma + 1


def test_weights_must_sum_to_one_and_ids_be_unique():
    """A campaign whose weights sum to 0.9, or that repeats an id, is refused with the path."""
    with pytest.raises(ValueError, match="weights sum to 0.9"):
        RulesFile.model_validate(_file([{"id": "A", "weight": 0.4}, {"id": "B", "weight": 0.5}]))
    with pytest.raises(ValueError, match="used twice"):
        RulesFile.model_validate(_file([{"id": "A", "weight": 0.5}, {"id": "A", "weight": 0.5}]))


def test_control_customers_get_no_variant_and_the_rest_carry_theirs():
    """Holdout is decided first; every other decision carries the variant and its offer code."""
    rules = rules_file([campaign("wm", holdout=0.2, variants=AB, channels=["sms", "app_push"])])
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    ids = [f"C{i}" for i in range(400)]
    out = policy.decide(
        [candidate("r-wm", "wm", cid) for cid in ids], {c: profile(c) for c in ids}, _at()
    )
    for d in out:
        cid = d.candidate.customer_id
        if in_control("wm", cid, 0.2):
            assert (d.outcome, d.variant, d.offer_code) == ("control", None, "OC-wm")
            continue
        expected = "A" if recomputed("wm", cid) < 5000 else "B"
        assert (d.outcome, d.variant, d.offer_code) == ("sent", expected, f"WM-{expected}")
        assert d.channel == ("sms" if expected == "A" else "app_push")  # B overrides channels
        assert d.offer()["variant"] == expected


def test_a_variant_overrides_offer_attributes():
    """A variant's `attributes` are added to (and override) the rule's in the offer."""
    arms = [{"id": "only", "weight": 1.0, "attributes": {"tone": "warm", "occurrence": 9}}]
    rules = rules_file([campaign("wm", variants=arms)])
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    [d] = policy.decide([candidate("r-wm", "wm")], {"C1": profile()}, _at())
    assert d.offer()["attributes"] == {"tone": "warm", "occurrence": 9}
    assert d.log_record()["variant"] == "only"


def test_the_draw_is_independent_of_the_holdout():
    """Among customers kept out of a 50% holdout, variant A still takes about half."""
    kept = [f"C{i}" for i in range(8000) if not in_control("wm", f"C{i}", 0.5)]
    share = sum(recomputed("wm", c) < 5000 for c in kept) / len(kept)
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / len(kept))


def _campaign(arms, campaign_id="wm"):  # type: ignore[no-untyped-def]
    from keymoment.policy.config import Campaign

    return Campaign(campaign_id=campaign_id, offer_code="X", channels=["sms"], variants=arms)


def _file(arms):  # type: ignore[no-untyped-def]
    return {
        "rules": [{"rule_id": "r", "trigger": "dormancy", "campaign": "wm"}],
        "campaigns": [
            {"campaign_id": "wm", "offer_code": "X", "channels": ["sms"], "variants": arms}
        ],
    }


def _at():  # type: ignore[no-untyped-def]
    from tests.unit.test_policy_support import T0

    return T0
