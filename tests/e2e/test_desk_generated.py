"""The operator's desk on generated customers (every trigger fires): `explain` and `compare`."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from keymoment.connectors.generator import Generator
from tests.support.cli import keymoment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("desk-generated")
    gen = Generator(seed=21, customers=1500, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=120)
    events = [orjson.loads(b) for b in gen.iter_bytes()]
    (out / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    (out / "customers.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    result = keymoment(
        "backtest", "--rules", REPO / "examples/rules.yaml", "--events", out / "events.jsonl",
        "--customers", out / "customers.jsonl", "--decisions", out / "decisions.jsonl",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for line in (out / "decisions.jsonl").open("rb"):
        record = orjson.loads(line)
        by_customer[record["customer_id"]].append(record)
    events_of: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        events_of[e["customer_id"]].append(e)
    return {"out": out, "by_customer": by_customer, "events_of": events_of}


def _explain(world: dict, customer: str) -> list[str]:
    out = world["out"]
    result = keymoment(
        "explain", "--decisions", out / "decisions.jsonl", "--customer", customer,
        "--rules", REPO / "examples/rules.yaml", "--events", out / "events.jsonl",
        "--customers", out / "customers.jsonl",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _clock(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_explain_names_the_start_that_armed_an_absence_timer(world: dict) -> None:
    """A loan-abandoned candidate: its apply_start is listed as arming it, due triggered_at."""
    customer, record = next(
        (c, r)
        for c, rs in world["by_customer"].items()
        for r in rs
        if r["rule_id"] == "loan-abandoned"
    )
    lines = _explain(world, customer)
    arming = next(line for line in lines if f"({record['event_id']}): armed" in line)
    assert "app apply_start loan" in arming
    assert f"armed loan-abandoned (due {_clock(record['triggered_at'])})" in arming


def _submitted(events: list[dict]) -> tuple[dict, dict] | None:
    """An apply_start for a loan and an apply_submit less than 30 minutes after it."""
    starts = [e for e in events if e.get("action") == "apply_start" and e.get("product") == "loan"]
    submits = [
        e for e in events if e.get("action") == "apply_submit" and e.get("product") == "loan"
    ]
    for s in starts:
        for c in submits:
            if timedelta(0) < _at(c["occurred_at"]) - _at(s["occurred_at"]) < timedelta(minutes=30):
                return s, c
    return None


def test_explain_names_the_submit_that_cancelled_an_absence_timer(world: dict) -> None:
    """A loan apply_submit within 30m of an apply_start is listed as cancelling the timer."""
    found = next(
        ((c, pair) for c, evs in world["events_of"].items() if (pair := _submitted(evs))), None
    )
    assert found, "the generator made no submitted loan application"
    customer, (_, submit) = found
    lines = _explain(world, customer)
    assert any(f"({submit['event_id']}): cancelled loan-abandoned" in line for line in lines), lines


def test_compare_on_generated_data_equals_two_backtests(world: dict, tmp_path: Path) -> None:
    """Other engine settings (each side stamped alone) and tighter caps: still the hand join."""
    import yaml

    from tests.support.joins import assert_compare_equals, join_by_hand

    rules = yaml.safe_load((REPO / "examples/rules.yaml").read_text())
    rules["version"] = 8
    rules["engine"] = {**rules.get("engine", {}), "allowed_lateness": "1h"}
    rules["caps"] = [{"id": "weekly-one", "scope": "customer", "limit": 1, "window": "7d"}]
    shutil.copytree(REPO / "examples/lists", tmp_path / "lists")  # lists live beside the rules
    new_rules = tmp_path / "rules-new.yaml"
    new_rules.write_text(yaml.safe_dump(rules))
    out = world["out"]
    backtest = keymoment(
        "backtest", "--rules", new_rules, "--events", out / "events.jsonl",
        "--customers", out / "customers.jsonl", "--decisions", tmp_path / "new.jsonl",
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    result = keymoment(
        "compare", "--rules", REPO / "examples/rules.yaml", "--rules", new_rules,
        "--events", out / "events.jsonl", "--customers", out / "customers.jsonl",
        "--json", tmp_path / "compare.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    old = [r for rs in world["by_customer"].values() for r in rs]
    new = [orjson.loads(line) for line in (tmp_path / "new.jsonl").open("rb")]
    compared = orjson.loads((tmp_path / "compare.json").read_bytes())
    assert_compare_equals(compared, join_by_hand(old, new))
    assert compared["sides"]["new"]["cap_refusals"].get("weekly-one", 0) > 0
