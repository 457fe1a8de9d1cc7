"""End to end: generated customers and candidates through the policy, then an independent audit.

The audit reads only the decision log (JSON lines), the customers, the list
files and the rules file, and recomputes every rule of semantics section 4
with its own plain code: caps, quiet hours, consent, suppression, holdout.
The same run on the memory store and on a real Redis must decide the same.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from keymoment.policy import build_policy
from keymoment.policy.decision import OUTCOMES
from keymoment.state import MemoryCapStore
from keymoment.state.redis_caps import RedisCapStore
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile
from tests.unit.test_policy_support import fixed_clock, rules_file

START = datetime(2026, 3, 1, tzinfo=UTC)  # spans the EU and US DST changes in March
ZONES = ["Asia/Shanghai", "Europe/Prague", "America/New_York", "Australia/Sydney", None]
CHANNELS = ["sms", "app_push", "email", "call_center"]
HOURS = {"sms": (8, 0, 21, 0), "call_center": (9, 0, 20, 0), "app_push": (7, 30, 22, 30)}
CAMPAIGNS = [
    {
        "campaign_id": "wealth",
        "offer_code": "W",
        "channels": ["app_push", "sms"],
        "priority": 50,
        "value": 120.0,
        "ttl": "24h",
        "holdout": 0.1,
        "lists": ["blacklist"],
    },
    {
        "campaign_id": "payroll",
        "offer_code": "P",
        "channels": ["app_push", "email", "sms"],
        "priority": 40,
        "value": 80.0,
        "ttl": "48h",
        "holdout": 0.2,
    },
    {
        "campaign_id": "retention",
        "offer_code": "R",
        "channels": ["call_center", "sms"],
        "priority": 60,
        "value": 200.0,
        "ttl": "72h",
        "max_delay": "12h",
        "holdout": 0.3,
        "lists": ["blacklist"],
    },
    {
        "campaign_id": "loan",
        "offer_code": "L",
        "channels": ["sms", "app_push"],
        "priority": 55,
        "value": 90.0,
        "ttl": "2h",
        "max_delay": "1h",
        "holdout": 0.05,
    },
]
RULES = [
    ("big", "wealth"),
    ("pay", "payroll"),
    ("stop", "retention"),
    ("loan", "loan"),
    ("loan2", "loan"),
]
CAPS = [
    {"id": "daily-any", "scope": "customer", "limit": 1, "window": "day"},
    {"id": "weekly-any", "scope": "customer", "limit": 3, "window": "7d"},
    {"id": "sms-weekly", "scope": "customer_channel", "channel": "sms", "limit": 2, "window": "7d"},
    {"id": "per-campaign", "scope": "customer_campaign", "limit": 2, "window": "month"},
    {"id": "week-any", "scope": "customer", "limit": 4, "window": "week"},
]


def world(tmp_path, seed: int = 7):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    customers = [f"K{i:04d}" for i in range(1500)]
    profiles = {
        c: CustomerProfile(
            customer_id=c,
            timezone=rng.choice(ZONES),
            consent={ch: True for ch in CHANNELS if rng.random() < 0.6},
        )
        for c in customers
    }
    dnc, black = set(rng.sample(customers, 40)), set(rng.sample(customers, 40))
    (tmp_path / "dnc.txt").write_text("# dnc\n" + "\n".join(sorted(dnc)) + "\n")
    (tmp_path / "black.txt").write_text("\n".join(sorted(black)) + "\n")
    channels = {
        ch: {"send_hours": f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"}
        for ch, (h1, m1, h2, m2) in HOURS.items()
    }
    rules = rules_file(
        CAMPAIGNS,
        rules=RULES,
        caps=CAPS,
        channels=channels,
        lists={"do_not_contact": tmp_path / "dnc.txt", "blacklist": tmp_path / "black.txt"},
        timezone="Asia/Shanghai",
    )
    return rng, customers, profiles, rules, {"do_not_contact": dnc, "blacklist": black}


def calls(rng: random.Random, customers: list[str]) -> list[tuple[list[Candidate], datetime]]:
    """Engine calls in time order: 1-3 rules per event or timer deadline, some decided late."""
    out, at = [], START
    for n in range(9000):
        at += timedelta(seconds=rng.randrange(1, 600))
        customer, timer = rng.choice(customers[:600]), rng.random() < 0.2
        fired = rng.sample(RULES, rng.choice([1, 1, 2, 3]))
        batch = [
            Candidate(
                rule_id=r,
                trigger="t",
                campaign=c,
                customer_id=customer,
                triggered_at=at,
                event_id=f"E{n}",
                timer=timer,
            )
            for r, c in fired
        ]
        lag = (
            timedelta(hours=rng.choice([0, 0, 0, 0, 1, 3, 30]))
            if rng.random() < 0.1
            else timedelta()
        )
        out.append((batch, at + lag))
    return out


def run(store, tmp_path) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    rng, customers, profiles, rules, _ = world(tmp_path)
    policy = build_policy(rules, store=store, clock=fixed_clock)
    log = []
    for batch, clock_at in calls(rng, customers):
        log += [
            orjson.loads(orjson.dumps(d.log_record()))
            for d in policy.decide(batch, profiles, clock_at)
        ]
    assert policy.pending == 0
    return log


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def bucket(campaign: str, customer: str) -> int:
    return (
        int.from_bytes(hashlib.sha256(f"{campaign}:{customer}".encode()).digest()[:8], "big")
        % 10000
    )


def audit(log, tmp_path) -> Counter:  # type: ignore[no-untyped-def,type-arg]
    """Recompute every rule from the log; return the outcome counts."""
    _, _, profiles, rules, lists = world(tmp_path)
    campaigns = {c["campaign_id"]: c for c in CAMPAIGNS}
    sent = [r for r in log if r["outcome"] == "sent"]
    for r in log:
        camp, cid = campaigns[r["campaign_id"]], r["customer_id"]
        names = ["do_not_contact", *camp.get("lists", [])]
        listed = [n for n in names if cid in lists[n]]
        held_out = bucket(camp["campaign_id"], cid) < round(camp["holdout"] * 10000)
        if r["outcome"] == "suppressed":
            assert r["reason"] == listed[0]
        else:
            assert not listed, r
            assert (r["outcome"] == "control") == held_out, r
    for r in sent:
        audit_sent(r, campaigns[r["campaign_id"]], profiles[r["customer_id"]])
    audit_caps(sent, profiles)
    audit_control_share(log, lists)
    return Counter((r["outcome"], r["reason"]) for r in log)


def audit_sent(r, camp, prof) -> None:  # type: ignore[no-untyped-def]
    channel, send_at, triggered_at = r["channel"], parse(r["send_at"]), parse(r["triggered_at"])
    assert channel in camp["channels"] and prof.consent.get(channel) is True, r
    local = send_at.astimezone(ZoneInfo(prof.timezone or "Asia/Shanghai"))
    if channel in HOURS:
        h1, m1, h2, m2 = HOURS[channel]
        assert (h1, m1) <= (local.hour, local.minute) < (h2, m2), r
    assert send_at >= triggered_at
    assert parse(r["expires_at"]) == triggered_at + timedelta(hours=int(camp["ttl"][:-1]))


def audit_caps(sent, profiles) -> None:  # type: ignore[no-untyped-def]
    for cap in CAPS:
        groups = defaultdict(list)
        for r in sent:
            if cap.get("channel") not in (None, r["channel"]):
                continue
            scope = {
                "customer": "",
                "customer_channel": r["channel"],
                "customer_campaign": r["campaign_id"],
            }[cap["scope"]]
            groups[(r["customer_id"], scope)].append(parse(r["send_at"]))
        for (cid, _), times in groups.items():
            tz = ZoneInfo(profiles[cid].timezone or "Asia/Shanghai")
            if cap["window"].endswith("d"):
                width = timedelta(days=int(cap["window"][:-1]))
                worst = max(sum(t <= u < t + width for u in times) for t in times)
            else:
                period = {
                    "day": lambda d: d.date(),
                    "week": lambda d: d.date().isocalendar()[:2],
                    "month": lambda d: (d.year, d.month),
                }[cap["window"]]
                worst = max(Counter(period(t.astimezone(tz)) for t in times).values())
            assert worst <= cap["limit"], (cap["id"], cid)


def audit_control_share(log, lists) -> None:  # type: ignore[no-untyped-def]
    """Per campaign, the share of eligible customers in control is near its holdout (4 sigma)."""
    for camp in CAMPAIGNS:
        eligible = {
            r["customer_id"]: r["outcome"] == "control"
            for r in log
            if r["campaign_id"] == camp["campaign_id"] and r["outcome"] != "suppressed"
        }
        n, h = len(eligible), camp["holdout"]
        share = sum(eligible.values()) / n
        assert abs(share - h) <= 4 * math.sqrt(h * (1 - h) / n), (camp["campaign_id"], share, n)


def test_generated_run_has_zero_violations_on_both_stores(tmp_path, redis_server):
    """Memory and Redis decide identically, and the audit finds no violation of any rule."""
    memory = run(MemoryCapStore(), tmp_path)
    store = RedisCapStore(redis_server.url, prefix="e2e", timeout=5.0)
    shared = run(store, tmp_path)
    store.close()
    key = lambda r: (r["offer_id"], r["outcome"], r["reason"], r["channel"], r["send_at"])  # noqa: E731
    assert [key(r) for r in memory] == [key(r) for r in shared]
    counts = audit(memory, tmp_path)
    outcomes = Counter(o for o, _ in counts.elements())
    assert len(memory) == sum(outcomes.values()) and len({r["offer_id"] for r in memory}) == len(
        memory
    )
    for outcome in OUTCOMES:
        if outcome == "shadow":  # these rules have no shadow rule: test_shadow_paused.py has them
            continue
        assert outcomes[outcome] > 0, (outcome, counts)
    assert counts[("sent", "deferred_quiet_hours")] > 0 and counts[("expired", "max_delay")] > 0
    assert counts[("expired", "ttl")] > 0


@pytest.mark.parametrize("seed", [1])
def test_audit_catches_a_broken_log(tmp_path, seed):
    """The audit is not vacuous: a log with one extra SMS at night fails it."""
    log = run(MemoryCapStore(), tmp_path)
    night = next(r for r in log if r["outcome"] == "sent" and r["channel"] == "sms")
    send_at = parse(night["send_at"])
    tz = ZoneInfo(world(tmp_path)[2][night["customer_id"]].timezone or "Asia/Shanghai")
    local_3am = send_at.astimezone(tz).replace(hour=3, minute=0)
    broken = dict(night, send_at=local_3am.astimezone(UTC).isoformat())
    with pytest.raises(AssertionError):
        audit([*log, broken], tmp_path)
