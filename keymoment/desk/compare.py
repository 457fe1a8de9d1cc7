"""Two rule versions' decisions on the same history, side by side (`keymoment compare`).

Pure: two sequences of decision records in, the comparison's JSON out
(docs/desk.md). Candidates are matched across sides by `offer_id`, which
is `sha256(rule_id:customer_id:event_id)` (plus the deadline for timers):
the same rule firing on the same event is the same candidate on both
sides, so `changed` counts candidates whose outcome differs, and a
candidate only one side has counts as `absent` on the other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .tally import tally

ABSENT = "absent"
SAMPLE = 10


def compare(
    old: Sequence[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    rule_ids: tuple[Iterable[str], Iterable[str]] = ((), ()),
    sample: int = SAMPLE,
) -> dict[str, Any]:
    """The JSON `compare --json` writes: both sides, their difference, customers, changes."""
    sides = {"old": tally(old).as_json(rule_ids[0]), "new": tally(new).as_json(rule_ids[1])}
    return {
        "sides": sides,
        "difference": difference(sides["old"], sides["new"]),
        "customers": customers(old, new, sample),
        "changed": changed(old, new),
    }


def changed(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> dict[str, int]:
    """`"OLD->NEW": n` for every candidate whose outcome differs (`absent` on a missing side)."""
    before = {r["offer_id"]: r["outcome"] for r in old}
    after = {r["offer_id"]: r["outcome"] for r in new}
    counts: Counter[str] = Counter()
    for offer_id in before.keys() | after.keys():
        a, b = before.get(offer_id, ABSENT), after.get(offer_id, ABSENT)
        if a != b:
            counts[f"{a}->{b}"] += 1
    return dict(counts.most_common())


def customers(
    old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]], sample: int
) -> dict[str, Any]:
    """Customers sent an offer by only one side or by both, and who gained or lost an offer.

    `gained_offer` counts customers sent at least one offer (offer_id) by new that old did
    not send; `lost_offer` the other way round. A customer can be in both.
    """
    sent_old = {(r["customer_id"], r["offer_id"]) for r in old if r["outcome"] == "sent"}
    sent_new = {(r["customer_id"], r["offer_id"]) for r in new if r["outcome"] == "sent"}
    a, b = {c for c, _ in sent_old}, {c for c, _ in sent_new}
    return {
        "only_old": len(a - b),
        "only_new": len(b - a),
        "both": len(a & b),
        "gained_offer": len({c for c, _ in sent_new - sent_old}),
        "lost_offer": len({c for c, _ in sent_old - sent_new}),
        "sample_only_old": sorted(a - b)[:sample],
        "sample_only_new": sorted(b - a)[:sample],
    }


def difference(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """new minus old for every count both sides have (zero where a side has none)."""
    return {
        "by_rule": _nested(old["by_rule"], new["by_rule"]),
        "sent_by_campaign": _nested(old["sent_by_campaign"], new["sent_by_campaign"]),
        "cap_refusals": _flat(old["cap_refusals"], new["cap_refusals"]),
        "arbitration_losses": _flat(old["arbitration_losses"], new["arbitration_losses"]),
        "funnel": _flat(old["funnel"], new["funnel"]),
        "customers_contacted": new["customers_contacted"] - old["customers_contacted"],
    }


def _flat(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b.get(k, 0) - a.get(k, 0) for k in dict.fromkeys([*a, *b])}


def _nested(
    a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {k: _flat(a.get(k, {}), b.get(k, {})) for k in dict.fromkeys([*a, *b])}
