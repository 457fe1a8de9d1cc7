"""`keymoment backtest` on generated customers, audited from the decision log alone.

The generator's customers get mixed timezones, consents, lists and the
example rules' holdouts and caps; the audit below recomputes section 4 of
the semantics with its own plain code from the decision log, the customers
and the list files: zero cap, quiet-hour, consent, suppression or holdout
violations, and each campaign's control share close to its holdout.
"""

from __future__ import annotations

import hashlib
import math
import random
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml

from keymoment.connectors.generator import Generator
from keymoment.policy.decision import OUTCOMES

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1, tzinfo=UTC)  # 240 days: crosses the March and the October DST changes
RULES_TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("generated")
    gen = Generator(seed=11, customers=2500, start_at=START, days=240, noise=0.01)
    rng = random.Random(5)
    profiles = [_vary(p, rng) for p in gen.profiles()]
    ids = [p["customer_id"] for p in profiles]
    lists = {"do_not_contact": set(rng.sample(ids, 60)), "blacklist": set(rng.sample(ids, 120))}
    (out / "lists").mkdir()
    for name, members in lists.items():
        (out / "lists" / f"{name}.txt").write_text(
            "# generated\n" + "\n".join(sorted(members)) + "\n"
        )
    rules = yaml.safe_load((REPO / "examples" / "rules.yaml").read_text())
    rules["lists"] = {name: f"lists/{name}.txt" for name in lists}
    (out / "rules.yaml").write_text(yaml.safe_dump(rules))
    (out / "customers.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in profiles))
    (out / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keymoment",
            "backtest",
            "--rules",
            out / "rules.yaml",
            "--events",
            out / "events.jsonl",
            "--customers",
            out / "customers.jsonl",
            "--until",
            gen.until_at.isoformat(),
            "--decisions",
            out / "decisions.jsonl",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    log = [orjson.loads(line) for line in (out / "decisions.jsonl").read_bytes().splitlines()]
    return {
        "rules": rules,
        "profiles": {p["customer_id"]: p for p in profiles},
        "lists": lists,
        "log": log,
        "stdout": result.stdout,
    }


def _vary(profile: dict, rng: random.Random) -> dict:
    """Some customers without a timezone (the rules' default applies) or without some consents."""
    if rng.random() < 0.2:
        profile.pop("timezone", None)
    profile["consent"] = {
        ch: ok for ch, ok in profile.get("consent", {}).items() if rng.random() < 0.7
    }
    return profile


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _zone(world: dict, customer: str) -> ZoneInfo:
    return ZoneInfo(world["profiles"][customer].get("timezone") or RULES_TZ)


def _bucket(campaign: str, customer: str) -> int:
    digest = hashlib.sha256(f"{campaign}:{customer}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10000


def _hours(text: str) -> tuple[time, time]:
    start, end = text.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def test_every_trigger_fires_and_every_outcome_is_explained(world: dict) -> None:
    """All eight rules fire; each decision has one known outcome, and a reason if unsent."""
    rules = Counter(d["rule_id"] for d in world["log"])
    assert set(rules) == {r["rule_id"] for r in world["rules"]["rules"]}
    outcomes = Counter(d["outcome"] for d in world["log"])
    assert set(outcomes) <= set(OUTCOMES)
    assert {"sent", "control", "suppressed", "capped"} <= set(outcomes), outcomes
    assert all(d["reason"] for d in world["log"] if d["outcome"] not in ("sent", "control"))
    assert len({d["offer_id"] for d in world["log"]}) == len(world["log"])


def test_no_offer_breaks_consent_quiet_hours_suppression_or_holdout(world: dict) -> None:
    """Each sent offer: consented channel, local hours, nobody listed, outside the holdout."""
    campaigns = {c["campaign_id"]: c for c in world["rules"]["campaigns"]}
    hours = {  # a human channel's working hours are its sending hours
        ch: _hours(cfg.get("send_hours") or cfg["working_hours"])
        for ch, cfg in world["rules"]["channels"].items()
    }
    for d in world["log"]:
        customer, campaign = d["customer_id"], campaigns[d["campaign_id"]]
        listed = customer in world["lists"]["do_not_contact"] or any(
            customer in world["lists"][name] for name in campaign.get("lists", [])
        )
        if d["outcome"] in ("sent", "control"):
            assert not listed, d
            in_holdout = (
                _bucket(campaign["campaign_id"], customer) < campaign.get("holdout", 0) * 10000
            )
            assert in_holdout == (d["outcome"] == "control"), d
        if d["outcome"] != "sent":
            continue
        assert world["profiles"][customer]["consent"].get(d["channel"]) is True, d
        send_at = _at(d["send_at"])
        assert _at(d["triggered_at"]) <= send_at <= _at(d["expires_at"]), d
        if d["channel"] in hours:
            start, end = hours[d["channel"]]
            local = send_at.astimezone(_zone(world, customer)).time()
            assert start <= local < end, (d, local)


def test_no_cap_is_exceeded(world: dict) -> None:
    """Recount every cap from sent offers: calendar caps per local period, rolling per window."""
    sent = [d for d in world["log"] if d["outcome"] == "sent"]
    for cap in world["rules"]["caps"]:
        groups: dict[tuple, list[datetime]] = defaultdict(list)
        for d in sent:
            if cap.get("channel") and d["channel"] != cap["channel"]:
                continue
            if cap.get("campaign") and d["campaign_id"] != cap["campaign"]:
                continue
            scope = {
                "customer": None,
                "customer_channel": "channel",
                "customer_campaign": "campaign_id",
                "customer_rule": "rule_id",
            }[cap["scope"]]
            groups[(d["customer_id"], d[scope] if scope else None)].append(_at(d["send_at"]))
        for (customer, _), times in groups.items():
            _check_cap(cap, sorted(times), _zone(world, customer))


def _check_cap(cap: dict, times: list[datetime], zone: ZoneInfo) -> None:
    window = cap["window"]
    if window in ("day", "week", "month"):
        periods = Counter(_period(t.astimezone(zone), window) for t in times)
        assert max(periods.values()) <= cap["limit"], (cap["id"], periods.most_common(1))
        return
    length = (
        timedelta(days=int(window[:-1]))
        if window.endswith("d")
        else timedelta(hours=int(window[:-1]))
    )
    for i, start in enumerate(times):
        inside = sum(1 for t in times[i:] if t < start + length)
        assert inside <= cap["limit"], (cap["id"], start)


def _period(local: datetime, window: str) -> tuple:
    if window == "day":
        return local.date()
    if window == "week":
        return local.isocalendar()[:2]
    return local.year, local.month


def test_control_share_per_campaign_is_close_to_its_holdout(world: dict) -> None:
    """Among customers past suppression, the share in control is within 4 sigma of the holdout.

    The draw is per customer and campaign, so customers, not candidates, are the trials.
    """
    campaigns = {c["campaign_id"]: c for c in world["rules"]["campaigns"]}
    seen: dict[str, dict[str, bool]] = defaultdict(dict)
    for d in world["log"]:
        if d["outcome"] != "suppressed":
            members = seen[d["campaign_id"]]
            members[d["customer_id"]] = (
                members.get(d["customer_id"], False) or d["outcome"] == "control"
            )
    for campaign_id, members in seen.items():
        share, n = campaigns[campaign_id].get("holdout", 0.0), len(members)
        control = sum(members.values())
        sigma = math.sqrt(share * (1 - share) / n)
        assert abs(control / n - share) <= 4 * sigma + 1e-9, (campaign_id, control, n, share)
