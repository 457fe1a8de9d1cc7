"""Each step of the contact policy on small hand-made cases (semantics section 4)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from keymoment.policy import build_policy
from keymoment.policy.holdout import bucket, in_control
from keymoment.policy.suppression import FileLists, FixedLists
from keymoment.state import MemoryCapStore, cap_key
from tests.unit.test_policy_support import (
    T0,
    campaign,
    candidate,
    fixed_clock,
    profile,
    profiles,
    rules_file,
)


def decide(rules, cands, profs, clock_at=None, store=None):  # type: ignore[no-untyped-def]
    policy = build_policy(rules, store=store or MemoryCapStore(), clock=fixed_clock)
    return policy.decide(cands, profs, clock_at or max(c.triggered_at for c in cands))


def outcomes(decisions):  # type: ignore[no-untyped-def]
    return [(d.candidate.rule_id, d.outcome, d.reason) for d in decisions]


# -- holdout ------------------------------------------------------------------------------------
def test_holdout_bucket_is_the_documented_hash():
    """The bucket is sha256(campaign:customer), first 8 bytes big-endian, modulo 10000."""
    digest = hashlib.sha256(b"wealth-welcome:C42").digest()
    assert bucket("wealth-welcome", "C42") == int.from_bytes(digest[:8], "big") % 10000


def test_holdout_threshold_is_exact_in_decimal():
    """A 7% holdout keeps exactly buckets 0..699 (no float rounding lets bucket 700 in)."""
    ids = [f"C{i}" for i in range(40000)]
    for cid in ids:
        assert in_control("camp", cid, 0.07) == (bucket("camp", cid) < 700)
    assert not any(in_control("camp", cid, 0.0) for cid in ids[:500])
    assert all(in_control("camp", cid, 1.0) for cid in ids[:500])


def test_control_candidates_are_logged_and_take_no_slot():
    """A customer in the control bucket ends `control`/`holdout` and no cap slot is used."""
    cid = next(f"C{i}" for i in range(1000) if bucket("c1", f"C{i}") < 5000)
    rules = rules_file(
        [campaign("c1", holdout=0.5)],
        caps=[{"id": "any", "scope": "customer", "limit": 1, "window": "day"}],
    )
    store = MemoryCapStore()
    out = decide(rules, [candidate("r-c1", "c1", cid)], profiles(profile(cid)), store=store)
    assert outcomes(out) == [("r-c1", "control", "holdout")]
    assert (out[0].channel, out[0].send_at) == ("sms", T0)  # would have gone on sms, at once
    assert store.slots(cap_key(cid, "any", "")) == []


# -- arbitration ---------------------------------------------------------------------------------
def test_arbitration_orders_by_priority_then_value_then_rule_id():
    """Same event: priority desc wins; on a tie value desc; on a tie rule_id asc."""
    rules = rules_file(
        [
            campaign("low", priority=1, value=99.0),
            campaign("high", priority=5, value=1.0),
            campaign("high2", priority=5, value=1.0),
            campaign("rich", priority=5, value=2.0),
        ],
        rules=[("r-low", "low"), ("b-high", "high"), ("a-high", "high2"), ("z-rich", "rich")],
    )
    cands = [
        candidate(r, c, event_id="E1")
        for r, c in [("r-low", "low"), ("b-high", "high"), ("a-high", "high2"), ("z-rich", "rich")]
    ]
    out = dict((r, (o, why)) for r, o, why in outcomes(decide(rules, cands, profiles(profile()))))
    assert out["z-rich"] == ("sent", "admitted")
    assert out["r-low"] == out["b-high"] == out["a-high"] == ("arbitration_lost", "z-rich")
    tie = rules_file(
        [campaign("high", priority=5), campaign("high2", priority=5)],
        rules=[("b-high", "high"), ("a-high", "high2")],
    )
    out = outcomes(decide(tie, cands[1:3], profiles(profile())))
    assert out == [("b-high", "arbitration_lost", "a-high"), ("a-high", "sent", "admitted")]


def test_arbitration_groups_by_event_and_timer_deadline_only():
    """Different event ids do not compete; timers compete on the same triggered_at only."""
    rules = rules_file(
        [campaign("a", priority=2), campaign("b", priority=1)], channels={}, max_offers=1
    )
    later = T0 + timedelta(seconds=1)
    cands = [
        candidate("r-a", "a", event_id="E1"),
        candidate("r-b", "b", event_id="E2"),
        candidate("r-a", "a", at=later, event_id="X", timer=True),
        candidate("r-b", "b", at=later, event_id="Y", timer=True),
    ]
    out = outcomes(decide(rules, cands, profiles(profile(consent=["sms", "app_push"])), later))
    assert [o for _, o, _ in out] == ["sent", "sent", "sent", "arbitration_lost"]
    assert out[3][2] == "r-a"


def test_max_offers_per_event_lets_several_through():
    """With max_offers_per_event 2 the two best go on and the third loses to the best."""
    rules = rules_file(
        [campaign(n, priority=p, channels=["sms"]) for n, p in [("a", 3), ("b", 2), ("c", 1)]],
        max_offers=2,
    )
    cands = [candidate(f"r-{n}", n, event_id="E") for n in "cba"]
    out = outcomes(decide(rules, cands, profiles(profile())))
    assert out == [
        ("r-c", "arbitration_lost", "r-a"),
        ("r-b", "sent", "admitted"),
        ("r-a", "sent", "admitted"),
    ]


# -- suppression ---------------------------------------------------------------------------------
def test_do_not_contact_applies_everywhere_and_named_lists_only_to_their_campaigns(tmp_path):
    """do_not_contact suppresses every campaign; a named list only the campaigns naming it."""
    dnc, black = tmp_path / "dnc.txt", tmp_path / "black.txt"
    dnc.write_text("# asked not to be contacted\nD1\n\n")
    black.write_text("B1   # fraud review\n")
    rules = rules_file(
        [campaign("a", lists=["blacklist"]), campaign("b")],
        lists={"do_not_contact": dnc, "blacklist": black},
    )
    cands = [
        candidate("r-a", "a", "D1"),
        candidate("r-b", "b", "D1"),
        candidate("r-a", "a", "B1"),
        candidate("r-b", "b", "B1"),
    ]
    out = outcomes(decide(rules, cands, profiles(profile("D1"), profile("B1"))))
    assert out == [
        ("r-a", "suppressed", "do_not_contact"),
        ("r-b", "suppressed", "do_not_contact"),
        ("r-a", "suppressed", "blacklist"),
        ("r-b", "sent", "admitted"),
    ]


def test_one_candidate_per_call_is_suppressed_as_in_a_batch(tmp_path):
    """The one-candidate path (`_one`, membership per list) answers what a batch's lookup does,
    also for a list never read (it holds everyone of the campaigns naming it)."""
    dnc, black = tmp_path / "dnc.txt", tmp_path / "black.txt"
    dnc.write_text("D1\n")
    black.write_text("B1\n")
    lists = {"do_not_contact": dnc, "blacklist": black, "vip": tmp_path / "missing.txt"}
    rules = rules_file(
        [campaign("a", lists=["blacklist"]), campaign("b"), campaign("c", lists=["vip"])],
        lists=lists,
    )
    cands = [candidate(f"r-{k}", k, who) for k in "abc" for who in ("D1", "B1", "X")]
    profs = profiles(profile("D1"), profile("B1"), profile("X"))
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    one_by_one = [d for c in cands for d in policy.decide([c], profs, c.triggered_at)]
    assert outcomes(one_by_one) == outcomes(decide(rules, cands, profs))
    assert [d.reason for d in one_by_one if d.outcome == "suppressed"] == [
        "do_not_contact", "blacklist", "do_not_contact", "do_not_contact", "vip", "vip",
    ]  # fmt: skip


def test_a_backtests_copy_of_redis_lists_suppresses_beside_the_files_and_after_a_rollout(
    tmp_path,
):
    """`FixedLists` (backtest --history's copy of Redis-held sets) is asked with the files,
    on the one-candidate path and in a batch, and stays when a new rules version comes in."""
    dnc, vip = tmp_path / "dnc.txt", tmp_path / "vip.txt"
    dnc.write_text("D1\n")
    vip.write_text("")  # the list is declared; its members here are in Redis only
    rules = rules_file([campaign("a", lists=["vip"])], lists={"do_not_contact": dnc, "vip": vip})
    copied = FixedLists({"vip": frozenset({"V1"}), "do_not_contact": frozenset({"D2"})})
    policy = build_policy(
        rules, store=MemoryCapStore(), clock=fixed_clock, lists=[FileLists(rules.lists), copied]
    )
    cands = [candidate("r-a", "a", who) for who in ("D1", "D2", "V1", "X")]
    profs = profiles(*(profile(c.customer_id) for c in cands))
    expected = [("r-a", "suppressed", "do_not_contact")] * 2 + [
        ("r-a", "suppressed", "vip"),
        ("r-a", "sent", "admitted"),
    ]
    assert outcomes(policy.decide(cands, profs, T0)) == expected
    policy.update_rules(rules.model_copy(update={"version": 2}))
    later = [candidate("r-a", "a", c.customer_id, at=T0 + timedelta(days=9)) for c in cands]
    assert (
        outcomes([d for c in later for d in policy.decide([c], profs, T0 + timedelta(days=9))])
        == expected
    )


def test_a_changed_list_file_takes_effect_after_the_check_interval(tmp_path):
    """Edits are picked up without a restart, at most `check_every` seconds late."""
    path = tmp_path / "dnc.txt"
    path.write_text("A\n")
    now = [0.0]
    lists = FileLists({"do_not_contact": path}, check_every=5, monotonic=lambda: now[0])
    path.write_text("A\nB\nC\n")
    assert lists.members(["do_not_contact"], ["B"]) == {"do_not_contact": set()}
    now[0] = 5.0
    assert lists.members(["do_not_contact"], ["A", "B", "X"]) == {"do_not_contact": {"A", "B"}}
    assert lists.counters["list_reloads"] == 2


def test_an_unreadable_list_keeps_its_last_good_contents(tmp_path):
    """Deleting a list file by accident does not release the customers on it."""
    path = tmp_path / "dnc.txt"
    path.write_text("A\n")
    now = [0.0]
    lists = FileLists({"do_not_contact": path}, check_every=1, monotonic=lambda: now[0])
    path.unlink()
    now[0] = 2.0
    assert lists.members(["do_not_contact"], ["A"]) == {"do_not_contact": {"A"}}
    assert lists.counters["list_read_errors"] == 1


# -- consent, ttl --------------------------------------------------------------------------------
def test_channels_without_consent_are_skipped():
    """The first consented channel takes the offer; none consented -> no_channel / no_consent."""
    rules = rules_file([campaign("a", channels=["sms", "app_push"])])
    out = decide(rules, [candidate("r-a", "a")], profiles(profile(consent=["app_push"])))
    assert (out[0].outcome, out[0].channel) == ("sent", "app_push")
    out = decide(rules, [candidate("r-a", "a")], profiles(profile(consent=["email"])))
    assert outcomes(out) == [("r-a", "no_channel", "no_consent")]
    out = decide(rules, [candidate("r-a", "a")], {})
    assert outcomes(out) == [("r-a", "no_channel", "no_profile")]


def test_a_candidate_older_than_ttl_at_decision_time_expires():
    """triggered_at more than ttl behind the engine clock -> expired/ttl; exactly ttl is sent."""
    rules = rules_file([campaign("a", ttl="2h")])
    c = candidate("r-a", "a")
    assert outcomes(
        decide(rules, [c], profiles(profile()), T0 + timedelta(hours=2, seconds=1))
    ) == [("r-a", "expired", "ttl")]
    out = decide(rules, [c], profiles(profile()), T0 + timedelta(hours=2))
    assert out[0].outcome == "sent"
    assert out[0].expires_at == T0 + timedelta(hours=2)


# -- quiet hours ---------------------------------------------------------------------------------
SMS_DAY = {"sms": {"send_hours": "08:00-21:00"}}


def sent_at(rules, local_at: datetime, tz: str):  # type: ignore[no-untyped-def]
    at = local_at.astimezone(UTC)
    out = decide(rules, [candidate("r-a", "a", at=at)], profiles(profile(timezone=tz)))
    return out[0]


def test_quiet_hours_start_is_open_and_end_is_closed():
    """08:00 local sends at once; 20:59:59 sends at once; 21:00 waits for 08:00 next day."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    rules = rules_file([campaign("a", ttl="24h")], channels=SMS_DAY)
    at8 = datetime(2026, 3, 2, 8, tzinfo=tz)
    assert sent_at(rules, at8, "Asia/Shanghai").send_at == at8
    before = datetime(2026, 3, 2, 20, 59, 59, tzinfo=tz)
    assert sent_at(rules, before, "Asia/Shanghai").send_at == before
    late = sent_at(rules, datetime(2026, 3, 2, 21, tzinfo=tz), "Asia/Shanghai")
    assert (late.outcome, late.reason) == ("sent", "deferred_quiet_hours")
    assert late.send_at == datetime(2026, 3, 3, 8, tzinfo=tz)


def test_deferral_across_a_dst_change_lands_on_local_opening_time():
    """An SMS at 22:00 on the eve of the US spring-forward goes at 08:00 EDT (12:00 UTC)."""
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    rules = rules_file([campaign("a", ttl="24h")], channels=SMS_DAY)
    d = sent_at(rules, datetime(2026, 3, 7, 22, tzinfo=ny), "America/New_York")
    assert d.send_at == datetime(2026, 3, 8, 12, tzinfo=UTC)
    assert d.send_at - d.candidate.triggered_at == timedelta(hours=9)  # the lost hour


def test_deferral_beyond_max_delay_tries_the_next_channel_then_expires():
    """A deferral past max_delay skips the channel; when all would, the outcome is expired."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Prague")
    hours = {"sms": {"send_hours": "08:00-21:00"}, "app_push": {"send_hours": "07:00-23:00"}}
    rules = rules_file(
        [campaign("a", channels=["sms", "app_push"], max_delay="8h")], channels=hours
    )
    d = sent_at(rules, datetime(2026, 3, 2, 21, 30, tzinfo=tz), "Europe/Prague")
    assert (d.channel, d.send_at) == ("app_push", datetime(2026, 3, 2, 21, 30, tzinfo=tz))
    d = sent_at(rules, datetime(2026, 3, 2, 23, 30, tzinfo=tz), "Europe/Prague")
    assert (d.channel, d.send_at) == ("app_push", datetime(2026, 3, 3, 7, tzinfo=tz))
    short = rules_file(
        [campaign("a", channels=["sms", "app_push"], max_delay="1h")], channels=hours
    )
    d = sent_at(short, datetime(2026, 3, 2, 23, 30, tzinfo=tz), "Europe/Prague")
    assert (d.outcome, d.reason) == ("expired", "max_delay")


def test_wrapping_quiet_hours_and_the_rules_file_timezone():
    """Hours 22:00-06:00 wrap midnight; a customer without a timezone uses the file's."""
    rules = rules_file(
        [campaign("a")], channels={"sms": {"send_hours": "22:00-06:00"}}, timezone="Asia/Tokyo"
    )  # noon UTC is 21:00 in Tokyo
    out = decide(rules, [candidate("r-a", "a")], profiles(profile()))
    assert out[0].send_at == datetime(2026, 3, 2, 13, tzinfo=UTC)


# -- caps ----------------------------------------------------------------------------------------
def test_all_or_none_across_several_caps():
    """When one cap refuses, no other cap keeps a slot for the refused offer."""
    caps = [
        {"id": "weekly", "scope": "customer", "limit": 5, "window": "7d"},
        {"id": "daily", "scope": "customer", "limit": 1, "window": "day"},
    ]
    rules = rules_file([campaign("a")], caps=caps)
    store = MemoryCapStore()
    policy = build_policy(rules, store=store, clock=fixed_clock)
    first = policy.decide([candidate("r-a", "a", event_id="E1")], profiles(profile()), T0)
    second = policy.decide([candidate("r-a", "a", event_id="E2")], profiles(profile()), T0)
    assert outcomes(first + second) == [("r-a", "sent", "admitted"), ("r-a", "capped", "daily")]
    assert [o for o, _ in store.slots(cap_key("C1", "weekly", ""))] == [first[0].offer_id]


def test_capped_reason_is_the_first_refusing_cap_and_channels_fall_back():
    """A channel cap refusing SMS moves the offer to push; when all refuse, reason = first cap."""
    caps = [
        {"id": "sms-1", "scope": "customer_channel", "channel": "sms", "limit": 1, "window": "24h"},
        {"id": "per-channel", "scope": "customer_channel", "limit": 2, "window": "24h"},
    ]
    rules = rules_file([campaign("a", channels=["sms", "app_push"])], caps=caps)
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    got = [
        policy.decide([candidate("r-a", "a", event_id=f"E{i}")], profiles(profile()), T0)[0]
        for i in range(4)
    ]
    assert [(d.outcome, d.channel, d.reason) for d in got] == [
        ("sent", "sms", "admitted"),
        ("sent", "app_push", "admitted"),
        ("sent", "app_push", "admitted"),
        ("capped", None, "sms-1"),
    ]


def test_campaign_and_rule_scopes_count_separately():
    """customer_campaign / customer_rule caps count per campaign / rule, or only the named one."""
    caps = [
        {"id": "per-campaign", "scope": "customer_campaign", "limit": 1, "window": "month"},
        {"id": "only-r2", "scope": "customer_rule", "rule": "r2", "limit": 0, "window": "24h"},
    ]
    rules = rules_file(
        [campaign("a"), campaign("b"), campaign("c")],
        caps=caps,
        rules=[("r1", "a"), ("r2", "c"), ("r3", "b")],
    )
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    run = [("r1", "a"), ("r3", "b"), ("r1", "a"), ("r2", "c")]
    got = [
        policy.decide([candidate(r, c, event_id=f"E{i}")], profiles(profile()), T0)[0]
        for i, (r, c) in enumerate(run)
    ]
    assert [(d.outcome, d.reason) for d in got] == [
        ("sent", "admitted"),
        ("sent", "admitted"),
        ("capped", "per-campaign"),
        ("capped", "only-r2"),
    ]


def test_calendar_week_starts_on_monday_in_the_customers_timezone():
    """Sunday 20:00 in New York is Monday in Shanghai: a weekly cap sees different weeks."""
    caps = [{"id": "week", "scope": "customer", "limit": 1, "window": "week"}]
    rules = rules_file([campaign("a")], caps=caps)
    sunday_night = datetime(2026, 3, 2, 1, tzinfo=UTC)  # Sun 20:00 NY, Mon 09:00 Shanghai
    monday = datetime(2026, 3, 2, 15, tzinfo=UTC)  # Mon 10:00 NY, Mon 23:00 Shanghai
    for tz, expected in [("America/New_York", "sent"), ("Asia/Shanghai", "capped")]:
        policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
        p = profiles(profile(timezone=tz))
        policy.decide([candidate("r-a", "a", at=sunday_night, event_id="E1")], p, sunday_night)
        d = policy.decide([candidate("r-a", "a", at=monday, event_id="E2")], p, monday)[0]
        assert d.outcome == expected, tz


def test_calendar_day_on_a_dst_day_is_23_hours_long():
    """A daily cap in Europe/Prague on 2026-03-29 ends at local midnight, 23h after it began."""
    from keymoment.policy.localtime import period, zone

    start, end = period(datetime(2026, 3, 29, 12, tzinfo=UTC), "day", zone("Europe/Prague"))
    assert (start, end - start) == (datetime(2026, 3, 28, 23, tzinfo=UTC), timedelta(hours=23))
    start, end = period(datetime(2026, 1, 31, 23, 30, tzinfo=UTC), "month", zone("Asia/Shanghai"))
    assert (start, end) == (
        datetime(2026, 1, 31, 16, tzinfo=UTC),
        datetime(2026, 2, 28, 16, tzinfo=UTC),
    )


def test_a_deferred_slot_counts_in_its_future_window():
    """Rolling caps see a deferred offer at its send_at, so an earlier-sent offer still fits."""
    caps = [{"id": "r6h", "scope": "customer", "limit": 1, "window": "6h"}]
    rules = rules_file(
        [campaign("a", channels=["sms"]), campaign("b", channels=["app_push"])],
        caps=caps,
        channels={"sms": {"send_hours": "08:00-21:00"}},
    )
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    night = datetime(2026, 3, 2, 22, tzinfo=UTC)
    p = profiles(profile())
    d1 = policy.decide([candidate("r-a", "a", at=night, event_id="E1")], p, night)[0]
    assert d1.send_at == datetime(2026, 3, 3, 8, tzinfo=UTC)
    d2 = policy.decide([candidate("r-b", "b", at=night, event_id="E2")], p, night)[0]
    assert (d2.outcome, d2.send_at) == ("sent", night)  # 10h before the deferred slot
    d3 = policy.decide(
        [candidate("r-b", "b", at=night + timedelta(hours=5), event_id="E3")],
        p,
        night + timedelta(hours=5),
    )[0]
    assert (d3.outcome, d3.reason) == ("capped", "r6h")  # 5h after E2's slot


def test_every_candidate_gets_exactly_one_decision_in_input_order(tmp_path):
    """A mixed batch returns one decision per candidate, in the order given."""
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("S\n")
    rules = rules_file([campaign("a"), campaign("b", priority=9)], lists={"do_not_contact": dnc})
    cands = [
        candidate("r-a", "a", "S"),
        candidate("r-a", "a", "C1", event_id="E"),
        candidate("r-b", "b", "C1", event_id="E"),
        candidate("r-a", "a", "NOPROF"),
    ]
    out = decide(rules, cands, profiles(profile("S"), profile("C1")))
    assert [d.candidate for d in out] == cands
    assert [d.outcome for d in out] == ["suppressed", "arbitration_lost", "sent", "no_channel"]
    assert all(d.reason for d in out)


def test_a_rules_update_applies_to_the_next_batch_and_keeps_the_history(tmp_path):
    """New caps and lists apply at once, old slots still count, removed campaigns are named."""
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("X\n")
    cap = {"id": "daily", "scope": "customer", "limit": 1, "window": "day"}
    old = rules_file([campaign("a"), campaign("gone")], caps=[cap])
    policy = build_policy(old, store=MemoryCapStore(), clock=fixed_clock)
    p = profiles(profile(), profile("X"))
    assert policy.decide([candidate("r-a", "a", event_id="E1")], p, T0)[0].outcome == "sent"
    new = rules_file([campaign("a")], caps=[cap | {"limit": 2}], lists={"do_not_contact": dnc})
    policy.update_rules(new)
    got = policy.decide(
        [
            candidate("r-a", "a", event_id="E2"),
            candidate("r-a", "a", event_id="E3"),
            candidate("r-a", "a", "X", event_id="E4"),
            candidate("r-gone", "gone", event_id="E5"),
        ],
        p,
        T0,
    )
    assert outcomes(got) == [
        ("r-a", "sent", "admitted"),
        ("r-a", "capped", "daily"),
        ("r-a", "suppressed", "do_not_contact"),
        ("r-gone", "no_channel", "unknown_campaign"),
    ]
    assert got[3].rule_version == 3 and got[3].expires_at is None


def test_a_restored_snapshot_decides_what_the_original_decides():
    """snapshot() -> pickle -> restore() in a new policy carries the memory store's history."""
    import pickle

    caps = [{"id": "weekly", "scope": "customer", "limit": 2, "window": "7d"}]
    rules = rules_file([campaign("a")], caps=caps)
    first = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    p = profiles(profile())
    first.decide([candidate("r-a", "a", event_id="E1")], p, T0)
    second = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock)
    second.restore(pickle.loads(pickle.dumps(first.snapshot())))
    later = [candidate("r-a", "a", at=T0 + timedelta(days=d), event_id=f"E{d}") for d in (1, 2, 8)]
    for c in later:
        assert outcomes(first.decide([c], p, c.triggered_at)) == outcomes(
            second.decide([c], p, c.triggered_at)
        )


def test_a_list_never_read_suppresses_everyone_it_applies_to(tmp_path):
    """Fail closed: an unreadable list (bad bytes) suppresses its campaigns until it is fixed."""
    black = tmp_path / "black.txt"
    black.write_bytes(b"\xff\xfe broken\n")
    rules = rules_file(
        [campaign("a", lists=["blacklist"]), campaign("b")], lists={"blacklist": black}
    )
    policy = build_policy(rules, store=MemoryCapStore(), clock=fixed_clock, list_check_every=0)
    p = profiles(profile())
    got = policy.decide(
        [candidate("r-a", "a", event_id="E1"), candidate("r-b", "b", event_id="E2")], p, T0
    )
    assert outcomes(got) == [("r-a", "suppressed", "blacklist"), ("r-b", "sent", "admitted")]
    black.write_text("SOMEONE\n")
    assert outcomes(policy.decide([candidate("r-a", "a", event_id="E3")], p, T0)) == [
        ("r-a", "sent", "admitted")
    ]
    assert policy.counters["lists_list_read_errors"] >= 1
