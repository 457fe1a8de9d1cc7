"""`keymoment report`: conversion uplift of treated over control, from a decision log."""

from __future__ import annotations

import gzip
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from keymoment.connectors.conversions import conversion_events
from keymoment.connectors.generator import Generator
from keymoment.desk import uplift
from keymoment.desk.stats import newcombe, wilson

REPO = Path(__file__).resolve().parents[2]


def _decision(campaign: str, customer: str, outcome: str, at: str) -> dict:
    return {
        "rule_id": f"rule-{campaign}",
        "campaign_id": campaign,
        "customer_id": customer,
        "outcome": outcome,
        "triggered_at": at,
    }


def _conversion(customer: str, at: str, product: str = "fund") -> dict:
    return {
        "type": "conversion",
        "event_id": f"c-{customer}-{at}",
        "customer_id": customer,
        "occurred_at": at,
        "product": product,
    }


def _write(path: Path, records: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def _report(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "keymoment", "report", *map(str, args)],
        capture_output=True,
        text=True,
    )


def test_report_counts_first_exposure_conversions_within_the_window(tmp_path: Path) -> None:
    """Only conversions inside the window after a customer's first candidate count, per arm."""
    decisions = _write(
        tmp_path / "d.jsonl",
        [
            _decision("wealth", "a", "sent", "2024-01-01T00:00:00Z"),
            _decision("wealth", "a", "capped", "2024-01-05T00:00:00Z"),  # not the first: ignored
            _decision("wealth", "b", "sent", "2024-01-01T00:00:00Z"),
            _decision("wealth", "c", "control", "2024-01-01T00:00:00Z"),
            _decision("wealth", "d", "control", "2024-01-01T00:00:00Z"),
            _decision("wealth", "e", "suppressed", "2024-01-01T00:00:00Z"),  # in neither arm
        ],
    )
    events = _write(
        tmp_path / "e.jsonl",
        [
            _conversion("a", "2024-01-10T00:00:00Z"),  # inside 30d
            _conversion("b", "2024-03-01T00:00:00Z"),  # outside 30d
            _conversion("c", "2024-01-02T00:00:00Z", product="card"),  # other product
            _conversion("e", "2024-01-02T00:00:00Z"),
        ],
    )
    result = _report("--decisions", decisions, "--events", events, "--product", "fund")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("wealth"))
    assert row.split()[:5] == ["wealth", "2", "50.0%", "2", "0.0%"]
    assert "wealth: treated arm has 2 customers and control arm has 2 customers" in result.stdout


def test_newcombe_interval_matches_the_published_example() -> None:
    """Newcombe (1998) Table II, 56/70 vs 48/80: difference 0.2000, 95% CI 0.0524 .. 0.3339."""
    u = newcombe(wilson(56, 70), wilson(48, 80))
    assert round(u.diff, 4) == 0.2
    assert (round(u.low, 4), round(u.high, 4)) == (0.0524, 0.3339)


def test_an_arm_without_conversions_still_has_a_real_interval() -> None:
    """0 of 10 against 0 of 10: Wald would say 0 ± 0; Wilson and Newcombe stay wide."""
    treated, control = wilson(0, 10), wilson(0, 10)
    assert treated.low == 0 and treated.high > 0.25
    u = newcombe(treated, control)
    assert u.diff == 0 and u.low < -0.25 and u.high > 0.25 and u.p_value == 1.0


def test_no_conversion_events_is_said_plainly(tmp_path: Path) -> None:
    """Events without any conversion: one line naming the files, not a table of 0.0%."""
    decisions = _write(tmp_path / "d.jsonl", [_decision("w", "a", "sent", "2024-01-01T00:00:00Z")])
    events = _write(tmp_path / "e.jsonl", [{"type": "app", "customer_id": "a"}])
    result = _report("--decisions", decisions, "--events", events)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"keymoment report: no conversion events found in {events}\n"


@pytest.mark.parametrize("mistake", ["swapped", "missing", "not_gzip"])
def test_a_wrong_input_file_is_one_line(tmp_path: Path, mistake: str) -> None:
    """Events given as the decision log, a missing file, a .gz that is not gzip: one line each."""
    decisions = _write(tmp_path / "d.jsonl", [_decision("w", "a", "sent", "2024-01-01T00:00:00Z")])
    events = _write(tmp_path / "e.jsonl", [_conversion("a", "2024-01-02T00:00:00Z")])
    bad_gz = tmp_path / "d.jsonl.gz"
    bad_gz.write_bytes(b"not gzip\n")
    args = {
        "swapped": ("--decisions", events, "--events", decisions),
        "missing": ("--decisions", tmp_path / "nope.jsonl", "--events", events),
        "not_gzip": ("--decisions", bad_gz, "--events", events),
    }[mistake]
    result = _report(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("keymoment report: ")
    expected = {"swapped": "is not a decision log", "missing": "cannot read", "not_gzip": "cannot"}
    assert expected[mistake] in result.stderr


UPLIFT = {"payroll-package": 0.25, "onboarding": 0.15, "win-back": 0.0}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Generated customers backtested on the example rules, answered with a known uplift."""
    out = tmp_path_factory.mktemp("uplift")
    gen = Generator(seed=3, customers=4000, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=150)
    (out / "events.jsonl").write_bytes(b"".join(b + b"\n" for b in gen.iter_bytes()))
    (out / "customers.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    subprocess.run(
        [sys.executable, "-m", "keymoment", "backtest", "--rules", REPO / "examples/rules.yaml"]
        + ["--events", out / "events.jsonl", "--customers", out / "customers.jsonl"]
        + ["--decisions", out / "decisions.jsonl.gz"],
        check=True,
        capture_output=True,
    )
    with gzip.open(out / "decisions.jsonl.gz") as handle:
        log = [orjson.loads(line) for line in handle]
    _write(out / "conversions.jsonl", list(conversion_events(log, UPLIFT, base=0.05, seed=9)))
    result = _report(
        "--decisions", out / "decisions.jsonl.gz", "--events", out / "conversions.jsonl",
        "--window", "7d", "--json", out / "report.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {"log": log, "report": orjson.loads((out / "report.json").read_bytes()), "out": out}


def test_the_seeded_uplift_is_recovered_within_its_interval(generated: dict) -> None:
    """Each campaign's known uplift (0 where none was seeded) lies inside its Newcombe interval.

    Conversions are counted per product (the generator names the product after the
    campaign), so one campaign's uplift does not leak into another's arms.
    """
    first = uplift.first_exposures(generated["log"])
    records = [orjson.loads(line) for line in (generated["out"] / "conversions.jsonl").open("rb")]
    checked = set()
    for campaign in {d["campaign_id"] for d in generated["log"]}:
        rows = uplift.tally(first, uplift.conversions(records, campaign), timedelta(days=7))
        row = next(r for r in rows if r.campaign_id == campaign)
        if row.warning:
            continue
        checked.add(campaign)
        assert row.uplift.low <= UPLIFT.get(campaign, 0.0) <= row.uplift.high, row
    assert checked >= set(UPLIFT)  # the seeded ones have arms large enough to judge
    report = generated["report"]["campaigns"]["payroll-package"]
    assert report["interval"][0] > 0.1 and report["p_value"] < 0.001  # seen as a real uplift


def test_the_json_arms_equal_the_decision_log_counted_by_hand(generated: dict) -> None:
    """Arm sizes are the customers whose first candidate of the campaign was sent / control."""
    first: dict[tuple[str, str], tuple[str, str]] = {}
    for d in generated["log"]:
        key = (d["campaign_id"], d["customer_id"])
        if key not in first or d["triggered_at"] < first[key][0]:
            first[key] = (d["triggered_at"], d["outcome"])
    for campaign, row in generated["report"]["campaigns"].items():
        for arm, outcome in (("treated", "sent"), ("control", "control")):
            n = sum(1 for (c, _), (_, o) in first.items() if c == campaign and o == outcome)
            assert row[arm]["customers"] == n


def test_the_html_report_shows_the_json_in_a_real_browser(generated: dict) -> None:
    """report --html: loads in chromium with no error or request; its numbers are the JSON's."""
    from tests.support.pagecheck import check_page

    out = generated["out"]
    result = _report(
        "--decisions", out / "decisions.jsonl.gz", "--events", out / "conversions.jsonl",
        "--window", "7d", "--json", out / "again.json", "--html", out / "report.html",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = orjson.loads((out / "again.json").read_bytes())
    cells = check_page(out / "report.html", expected)
    assert cells >= 7 * len(expected["campaigns"])
