"""The operator's desk on the shared Berka data: `explain` (and `compare`) as subprocesses.

Each command's output is checked against the decision log read here with
plain code: explain's candidate lines are the customer's records, one for
one, and each timer candidate's arming event is shown with that deadline.
"""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from tests.support.cli import keymoment
from tests.support.joins import assert_compare_equals, join_by_hand

REPO = Path(__file__).resolve().parents[2]
UNTIL = "1994-10-30T23:59:59+01:00"
LINE = re.compile(
    r"^  (\d{4}-\d\d-\d\d \d\d:\d\d UTC)  candidate  (\S+) \((\S+)\)(?: on .*?)?: (.*)$"
)
TIMERS = ("dormancy", "salary_missed", "absence")


@pytest.fixture(scope="module")
def berka(berka_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("desk-berka")
    events, customers = out / "events.jsonl.gz", out / "customers.jsonl"
    imported = keymoment(
        "import", "berka", "--trans", berka_dir / "trans_first100k.asc.gz",
        "--accounts", berka_dir / "account.asc", "--events", events, "--customers", customers,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    decisions = out / "decisions.jsonl"
    backtest = keymoment(
        "backtest", "--rules", REPO / "examples/rules.yaml", "--events", events,
        "--customers", customers, "--until", UNTIL, "--decisions", decisions,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    log = [orjson.loads(line) for line in decisions.open("rb")]
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for record in log:
        by_customer[record["customer_id"]].append(record)
    return {
        "out": out, "events": events, "customers": customers, "decisions": decisions,
        "log": log, "by_customer": by_customer,
    }  # fmt: skip


def _explain(berka: dict, customer: str, *more: object) -> list[str]:
    result = keymoment("explain", "--decisions", berka["decisions"], "--customer", customer, *more)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _clock(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")


def _pick(berka: dict, outcome: str) -> str:
    return next(
        c for c, rs in berka["by_customer"].items() if any(r["outcome"] == outcome for r in rs)
    )


@pytest.mark.parametrize("outcome", ["capped", "arbitration_lost", "control"])
def test_explain_lines_are_the_customers_decision_records(berka: dict, outcome: str) -> None:
    """One candidate line per record, in time order, with its rule, outcome and reason's id."""
    customer = _pick(berka, outcome)
    lines = _explain(
        berka, customer, "--rules", REPO / "examples/rules.yaml", "--events", berka["events"],
        "--customers", berka["customers"], "--until", UNTIL,
    )  # fmt: skip
    parsed = [m.groups() for m in map(LINE.match, lines) if m]
    records = sorted(berka["by_customer"][customer], key=lambda r: r["triggered_at"])
    assert len(parsed) == len(records)
    assert sorted(parsed, key=lambda p: p[0]) == parsed  # time order
    for (at, rule, trigger, text), record in zip(parsed, sorted(records, key=_order), strict=True):
        assert (at, rule, trigger) == (
            _clock(record["triggered_at"]),
            record["rule_id"],
            record["trigger"],
        )
        assert _words(record) in text, (text, record)
    assert not any(line.startswith("note:") for line in lines), lines  # the replay agrees


def _order(record: dict) -> tuple:
    return (record["triggered_at"], record["decided_at"])


def _words(record: dict) -> str:
    """What the line must say for this record: the outcome and the id in its reason."""
    outcome, reason = record["outcome"], record["reason"]
    return {
        "sent": f"sent via {record['channel']}",
        "control": f"held out as control for {record['campaign_id']}",
        "capped": f"capped by {reason}: already contacted",
        "arbitration_lost": f"lost arbitration to {reason}",
        "suppressed": f"on the {reason}",
    }.get(outcome, outcome)


def test_explain_shows_the_event_that_armed_each_timer_with_its_deadline(berka: dict) -> None:
    """A dormancy candidate's arming event is listed, arming or moving it to triggered_at."""
    customer, record = next(
        (c, r) for c, rs in berka["by_customer"].items() for r in rs if r["trigger"] == "dormancy"
    )
    lines = _explain(
        berka, customer, "--rules", REPO / "examples/rules.yaml", "--events", berka["events"],
        "--customers", berka["customers"], "--until", UNTIL,
    )  # fmt: skip
    due = _clock(record["triggered_at"])
    arming = [line for line in lines if "  event  " in line and f"({record['event_id']})" in line]
    assert arming, lines
    assert (
        f"{record['rule_id']} (due {due})" in arming[0]
        or f"{record['rule_id']} to {due}" in arming[0]
    )


def test_explain_says_how_near_big_deposit_came_in_bands(berka: dict) -> None:
    """With rules and events, a rule without a candidate gets its nearest miss, as a band."""
    customer = next(
        c
        for c, rs in berka["by_customer"].items()
        if all(r["rule_id"] != "big-deposit" for r in rs)
    )
    credits = []
    with gzip.open(berka["events"]) as handle:
        for line in handle:
            e = orjson.loads(line)
            if (
                e.get("customer_id") == customer
                and e.get("direction") == "credit"
                and e.get("kind") in ("cash_deposit", "transfer_in")
            ):
                credits.append(float(e["amount"]))
    lines = _explain(
        berka, customer, "--rules", REPO / "examples/rules.yaml", "--events", berka["events"]
    )
    miss = next(line for line in lines if line.startswith("  big-deposit (large_deposit): "))
    top = max(credits)
    edges = [1_000, 5_000, 10_000, 20_000, 50_000]
    low = max([0] + [e for e in edges if e <= top])
    assert "below min_amount 50,000" in miss
    assert ("under 1k" if low == 0 else f"is in {low // 1000}k-") in miss, (miss, top)
    assert f"{top:.2f}" not in "\n".join(lines) and f"{top:,.0f}" not in "\n".join(lines)


def test_a_customer_without_candidates_is_said_plainly(berka: dict) -> None:
    """A known customer with no candidate gets one plain line, not an empty table."""
    known = [orjson.loads(line)["customer_id"] for line in berka["customers"].open("rb")]
    quiet = next(c for c in known if c not in berka["by_customer"])
    lines = _explain(berka, quiet)
    assert lines == [f"customer {quiet}: no candidate at all in the decision log"]


def test_compare_equals_two_backtests_joined_by_hand(berka: dict) -> None:
    """min_amount 50,000 -> 20,000 on Berka: compare's JSON is the two backtests' logs joined."""
    from tests.support.pagecheck import check_page

    out, new_rules = berka["out"], REPO / "examples/rules-min20k.yaml"
    backtest = keymoment(
        "backtest", "--rules", new_rules, "--events", berka["events"],
        "--customers", berka["customers"], "--until", UNTIL, "--decisions", out / "new.jsonl",
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    new_log = [orjson.loads(line) for line in (out / "new.jsonl").open("rb")]
    result = keymoment(
        "compare", "--rules", REPO / "examples/rules.yaml", "--rules", new_rules,
        "--events", berka["events"], "--customers", berka["customers"], "--until", UNTIL,
        "--json", out / "compare.json", "--html", out / "compare.html",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    compared = orjson.loads((out / "compare.json").read_bytes())
    assert_compare_equals(compared, join_by_hand(berka["log"], new_log))
    assert (
        compared["sides"]["new"]["by_rule"]["big-deposit"]["sent"]
        > 10 * compared["sides"]["old"]["by_rule"]["big-deposit"]["sent"]
    )
    assert "absent->sent" in result.stdout and "only by new" in result.stdout
    assert check_page(out / "compare.html", compared) > 50
