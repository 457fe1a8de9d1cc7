"""Follow-up journeys (issue 12, section 3): sent offers fed back, cancelled by a conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from keymoment.config import RulesFile
from keymoment.flows.replay import Replay
from keymoment.policy import build_policy
from keymoment.state import MemoryCapStore
from keymoment.triggers.events import CustomerProfile
from tests.unit.test_policy_support import fixed_clock

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def rules(**follow):  # type: ignore[no-untyped-def]
    """A page view starts `first` (app_push); `second` (sms) follows up 3 days after it."""
    rule = {"rule_id": "again", "trigger": "follow_up", "campaign": "second",
            "after": {"campaign": "first"}, "within": "3d", **follow}  # fmt: skip
    return RulesFile.model_validate(
        {
            "rules": [
                {
                    "rule_id": "look",
                    "trigger": "window_threshold",
                    "campaign": "first",
                    "filter": {"type": "app", "action": "page_view"},
                    "aggregate": "count",
                    "window": "1h",
                    "op": "gte",
                    "value": 1,
                },
                rule,
            ],  # fmt: skip
            "campaigns": [
                {
                    "campaign_id": "first",
                    "offer_code": "F",
                    "channels": ["app_push"],
                    "product": "wealth",
                },
                {"campaign_id": "second", "offer_code": "S", "channels": ["sms"], "ttl": "2d"},
            ],  # fmt: skip
        }
    )


def view(cid: str, at: datetime) -> dict:
    return {"type": "app", "event_id": f"v-{cid}-{at:%d%H}", "customer_id": cid,
            "occurred_at": at.isoformat(), "action": "page_view"}  # fmt: skip


def conversion(cid: str, at: datetime, product: str = "wealth", offer_id: str | None = None):  # type: ignore[no-untyped-def]
    return {"type": "conversion", "event_id": f"c-{cid}-{at:%d%H}", "customer_id": cid,
            "occurred_at": at.isoformat(), "product": product, "offer_id": offer_id}  # fmt: skip


def replay(tmp_path: Path, ruleset: RulesFile, events: list[dict], until: datetime) -> list:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    consent = {"app_push": True, "sms": True}
    profiles = {c: CustomerProfile(customer_id=c, consent=consent) for c in ("C1", "C2", "C3")}
    policy = build_policy(ruleset, store=MemoryCapStore(), clock=fixed_clock)
    run = Replay(ruleset, profiles, policy, until=until)
    return [d for out in run.outputs([str(path)]) for d in out.decisions]


def test_a_follow_up_fires_within_after_the_sent_offer_unless_the_customer_converted(tmp_path):
    """C1 did nothing: a follow-up at send_at + 3d from the first offer; C2 converted: none."""
    events = [view("C1", T0), view("C2", T0), conversion("C2", T0 + timedelta(days=1)),
              view("C3", T0 + timedelta(days=5))]  # fmt: skip
    out = replay(tmp_path, rules(), events, T0 + timedelta(days=6))
    follow = [d for d in out if d.candidate.rule_id == "again"]
    [first] = [d for d in out if d.candidate.customer_id == "C1" and d.candidate.rule_id == "look"]
    assert [(d.candidate.customer_id, d.outcome, d.channel) for d in follow] == [
        ("C1", "sent", "sms")
    ]
    assert follow[0].candidate.triggered_at == T0 + timedelta(days=3)
    assert follow[0].candidate.event_id == first.offer_id  # the earlier offer's id
    assert follow[0].candidate.attributes["journey_step"] == 1


def test_a_conversion_of_another_product_does_not_end_the_journey_but_its_offer_id_does(tmp_path):
    """A loan conversion leaves the wealth follow-up pending; one carrying the offer_id ends it."""
    day = T0 + timedelta(days=1)
    events = [
        view("C1", T0),
        conversion("C1", day, "loan"),
        view("C2", T0),
        conversion("C2", day, "x"),
    ]
    out = replay(tmp_path, rules(), events, T0 + timedelta(days=4))
    assert sorted(d.candidate.customer_id for d in out if d.candidate.rule_id == "again") == [
        "C1",
        "C2",
    ]
    c2_offer = next(d.offer_id for d in out if d.candidate.customer_id == "C2")
    events[3] = conversion("C2", T0 + timedelta(days=1), "x", offer_id=c2_offer)
    out = replay(tmp_path, rules(), events, T0 + timedelta(days=4))
    assert [d.candidate.customer_id for d in out if d.candidate.rule_id == "again"] == ["C1"]


def test_unless_cancels_on_a_later_matching_event(tmp_path):
    """`unless: {type: app, action: login}`: a login within the window ends the follow-up."""
    login = {**view("C1", T0 + timedelta(days=1)), "action": "login", "event_id": "l1"}
    out = replay(tmp_path, rules(unless={"type": "app", "action": "login"}),
                 [view("C1", T0), login], T0 + timedelta(days=4))  # fmt: skip
    assert [d for d in out if d.candidate.rule_id == "again"] == []


def test_a_journey_on_its_own_campaign_stops_at_max_steps(tmp_path):
    """A follow-up of `second` by `second` with max_steps 2 sends exactly two follow-ups."""
    data = rules().model_dump()
    loop = {"rule_id": "again2", "trigger": "follow_up", "campaign": "second",
            "after": {"campaign": "second"}, "within": "3d", "max_steps": 2}  # fmt: skip
    data["rules"].append(loop)
    clock = [view("C3", T0 + timedelta(days=d, hours=1)) for d in range(30)]  # moves the watermark
    until = T0 + timedelta(days=30)
    out = replay(tmp_path, RulesFile.model_validate(data), [view("C1", T0), *clock], until)
    mine = [
        d for d in out if d.candidate.trigger == "follow_up" and d.candidate.customer_id == "C1"
    ]
    assert sorted(d.candidate.attributes["journey_step"] for d in mine) == [1, 2]
    assert all(d.outcome == "sent" for d in mine)


def test_a_follow_up_of_its_own_campaign_needs_max_steps():
    """Without max_steps such a rule could loop forever: the rules file is refused."""
    with pytest.raises(ValueError, match="max_steps"):
        rules(after={"campaign": "second"})
    with pytest.raises(ValueError, match="after.campaign"):
        rules(after={"campaign": "nowhere"})


def test_a_switch_to_a_longer_within_moves_the_pending_follow_up():
    """`within` 3d -> 5d while a follow-up waits: it fires 5 days after the offer, not 3.

    A longer `within` grows the engine's horizon, so without `FollowUp.timing()` the
    switch took the hand-over for unchanged rules and the old deadline stayed.
    """
    from keymoment.rollout.diff import diff
    from keymoment.triggers.engine import Engine
    from keymoment.triggers.follow_up import SentOffer
    from keymoment.triggers.switch import switched

    old, new = rules(), rules(within="5d")
    engine = Engine(old)
    engine.advance(T0)
    engine.evaluate(_event(view("C1", T0)))  # the customer's state exists
    assert engine.feedback(SentOffer("C1", "first", "o-1", T0, "wealth", 0)) == []
    change = diff(old, new)
    engine = switched(engine, new, change.carry, change.reset_salary)
    assert engine.advance(T0 + timedelta(days=4)) == []
    [fired] = engine.advance(T0 + timedelta(days=6))
    assert (fired.rule_id, fired.triggered_at) == ("again", T0 + timedelta(days=5))


def _event(record: dict):  # type: ignore[no-untyped-def]
    from keymoment.connectors.wire import decode

    return decode(orjson.dumps(record), "test")
