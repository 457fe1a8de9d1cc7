"""Two decision logs joined with plain code: what `compare` must report, recomputed by hand."""

from __future__ import annotations

from collections import defaultdict


def join_by_hand(old: list[dict], new: list[dict]) -> dict:
    """The comparison recomputed from two decision logs with plain code."""
    from collections import Counter

    def side(log: list[dict]) -> dict:
        by_rule: dict = defaultdict(Counter)
        sent: dict = defaultdict(Counter)
        for r in log:
            by_rule[r["rule_id"]][r["outcome"]] += 1
            if r["outcome"] == "sent":
                sent[r["campaign_id"]][r["channel"]] += 1
        caps = Counter(r["reason"] for r in log if r["outcome"] == "capped")
        losses = Counter(r["reason"] for r in log if r["outcome"] == "arbitration_lost")
        return {"by_rule": by_rule, "sent": sent, "caps": caps, "losses": losses}

    a = {r["offer_id"]: r["outcome"] for r in old}
    b = {r["offer_id"]: r["outcome"] for r in new}
    changed = Counter(
        f"{a.get(k, 'absent')}->{b.get(k, 'absent')}"
        for k in a.keys() | b.keys()
        if a.get(k, "absent") != b.get(k, "absent")
    )
    contacted_a = {r["customer_id"] for r in old if r["outcome"] == "sent"}
    contacted_b = {r["customer_id"] for r in new if r["outcome"] == "sent"}
    customers = {
        "only_old": len(contacted_a - contacted_b),
        "only_new": len(contacted_b - contacted_a),
        "both": len(contacted_a & contacted_b),
    }
    return {"old": side(old), "new": side(new), "changed": changed, "customers": customers}


def assert_compare_equals(result: dict, by_hand: dict) -> None:
    """Every figure of compare's JSON against the hand join of the two backtests."""
    assert result["changed"] == dict(by_hand["changed"])
    assert {k: result["customers"][k] for k in by_hand["customers"]} == by_hand["customers"]
    for name in ("old", "new"):
        side, hand = result["sides"][name], by_hand[name]
        for rule, outcomes in hand["by_rule"].items():
            assert {o: n for o, n in side["by_rule"][rule].items() if n} == dict(outcomes), rule
        assert all(
            not any(v.values()) for r, v in side["by_rule"].items() if r not in hand["by_rule"]
        )
        assert side["sent_by_campaign"] == {c: dict(v) for c, v in hand["sent"].items()}
        assert side["cap_refusals"] == dict(hand["caps"])
        assert side["arbitration_losses"] == dict(hand["losses"])
