"""The CLI as an operator runs it, on the shared real Berka data.

`keymoment import berka`, `validate` and `backtest` run as subprocesses; the
candidate counts per rule are then recomputed here with plain Python over
the imported events, independently of the engine's code.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import median
from typing import cast

import orjson
import pytest

HERE = Path(__file__).parent
UNTIL = datetime.fromisoformat("1994-10-30T23:59:59+01:00")
FEED_STOP = "1994-07-01"


def keymoment(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keymoment", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def imported(berka_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("berka")
    paths = {"events": out / "events.jsonl.gz", "customers": out / "customers.jsonl"}
    result = keymoment(
        "import",
        "berka",
        "--trans",
        berka_dir / "trans_first100k.asc.gz",
        "--accounts",
        berka_dir / "account.asc",
        "--events",
        paths["events"],
        "--customers",
        paths["customers"],
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 99999 events" in result.stdout
    return paths


def run_backtest(events: Path, customers: Path, name: str) -> dict[str, object]:
    out = events.parent
    decisions, dead = out / f"{name}-decisions.jsonl", out / f"{name}-dead.jsonl"
    result = keymoment(
        "backtest",
        "--rules",
        HERE / "berka_rules.yaml",
        "--events",
        events,
        "--customers",
        customers,
        "--until",
        UNTIL.isoformat(),
        "--decisions",
        decisions,
        "--dead-letters",
        dead,
    )
    assert result.returncode == 0, result.stderr
    return {
        "stdout": result.stdout,
        "decisions": [orjson.loads(line) for line in decisions.read_bytes().splitlines()],
        "dead": [orjson.loads(line) for line in dead.read_bytes().splitlines()],
    }


@pytest.fixture(scope="module")
def backtest(imported: dict[str, Path]) -> dict[str, object]:
    return run_backtest(imported["events"], imported["customers"], "full")


@pytest.fixture(scope="module")
def feed_stops(imported: dict[str, Path]) -> tuple[Path, dict[str, object]]:
    """The feed stops after June 1994 but the replay runs to UNTIL: salaries go missing."""
    short = imported["events"].parent / "to-june.jsonl"
    with gzip.open(imported["events"], "rb") as src, open(short, "wb") as dst:
        dst.writelines(line for line in src if orjson.loads(line)["occurred_at"] < FEED_STOP)
    return short, run_backtest(short, imported["customers"], "feed-stops")


def load_events(path: Path) -> list[dict]:
    """The imported events as plain dicts with Decimal amounts and datetimes, up to UNTIL."""
    events = []
    for line in (gzip.open if path.suffix == ".gz" else open)(path, "rb"):
        e = orjson.loads(line)
        e["t"] = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
        e["amt"] = Decimal(e["amount"])
        e["bal"] = Decimal(e["balance_after"])
        if e["t"] <= UNTIL and e["amt"] > 0:
            events.append(e)
    return events


def by_customer(events: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        grouped[e["customer_id"]].append(e)
    return grouped


def expected_counts(events: list[dict], opened: dict[str, datetime]) -> Counter[str]:
    """Every rule of berka_rules.yaml, recomputed by brute force per customer."""
    counts: Counter[str] = Counter()
    for cid, evs in by_customer(events).items():
        counts["big-deposit"] += large_deposits(evs)
        every, first, stopped = salaries(evs)
        counts["salary-every"] += every
        counts["salary-first"] += first
        counts["salary-stopped"] += stopped
        quiet, back = dormancy_and_reactivation(evs)
        counts["gone-quiet"] += quiet
        counts["welcome-back"] += back
        counts["honeymoon"] += milestones(evs, opened[cid])
        counts["cash-burst"] += cash_bursts(evs)
        counts["no-refill"] += no_refills(evs)
    return counts


def large_deposits(evs: list[dict]) -> int:
    fired, history = 0, []
    for e in evs:
        if e["direction"] != "credit" or e["kind"] not in ("cash_deposit", "transfer_in"):
            continue
        earlier = [a for t, a in history if e["t"] - timedelta(days=90) < t <= e["t"]]
        if e["amt"] >= 20000 and (len(earlier) < 3 or e["amt"] >= 5 * median(earlier)):
            fired += 1
        history.append((e["t"], e["amt"]))
    return fired


def salaries(evs: list[dict]) -> tuple[int, int, int]:
    """(salary credits, first detections, missed salaries) from transfer_in series."""
    every = first = stopped = 0
    series: dict[str, tuple[datetime, Decimal, int]] = {}
    last_salary: dict[str, datetime] = {}
    salary_times: list[tuple[str, datetime]] = []
    for e in evs:
        cp = e.get("counterparty")
        if e["direction"] != "credit" or e["kind"] != "transfer_in" or not cp:
            continue
        length = 1
        if cp in series:
            pt, pa, plen = series[cp]
            if (
                timedelta(days=25) <= e["t"] - pt <= timedelta(days=35)
                and abs(e["amt"] - pa) <= Decimal("0.2") * pa
            ):
                length = plen + 1
        series[cp] = (e["t"], e["amt"], length)
        if length >= 3:
            every += 1
            if cp not in last_salary or e["t"] - last_salary[cp] > timedelta(days=400):
                first += 1
            last_salary[cp] = e["t"]
            salary_times.append((cp, e["t"]))
    credits_from: dict[str, list[datetime]] = defaultdict(list)
    for e in evs:
        if e["direction"] == "credit" and e.get("counterparty"):
            credits_from[e["counterparty"]].append(e["t"])
    for cp, t in salary_times:
        deadline = t + timedelta(days=45)
        later = [c for c in credits_from[cp] if c > t]
        if (later and later[0] >= deadline) or (not later and deadline <= UNTIL):
            stopped += 1
    return every, first, stopped


def dormancy_and_reactivation(evs: list[dict]) -> tuple[int, int]:
    times = [e["t"] for e in evs if e["initiated_by"] == "customer"]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    quiet = sum(1 for g in gaps if g >= timedelta(days=90))
    if times and times[-1] + timedelta(days=90) <= UNTIL:
        quiet += 1
    back = sum(1 for g in gaps if timedelta(days=90) <= g <= timedelta(days=400))
    return quiet, back


def milestones(evs: list[dict], opened_at: datetime) -> int:
    fired, reached = 0, set()
    for e in evs:
        if not timedelta(0) <= e["t"] - opened_at <= timedelta(days=90):
            continue
        newly = [th for th in (1000, 10000, 50000) if e["bal"] >= th and th not in reached]
        if newly:
            fired += 1
            reached.update(th for th in (1000, 10000, 50000) if th <= e["bal"])
    return fired


def cash_bursts(evs: list[dict]) -> int:
    """Edge-triggered; an empty window before the event also counts as "false" (docs/engine.md)."""
    fired, was, seen = 0, False, []
    for e in evs:
        if e["kind"] != "cash_withdrawal":
            continue
        inside = [a for t, a in seen if e["t"] - timedelta(days=7) < t <= e["t"]]
        was = was and bool(inside)
        now = sum(inside) + e["amt"] >= 20000
        fired += now and not was
        was = now
        seen.append((e["t"], e["amt"]))
    return fired


def no_refills(evs: list[dict]) -> int:
    """Input is in time order, so the watermark at each event is that event's time."""
    fired, deadline = 0, None
    for e in evs:
        if deadline is not None and deadline <= e["t"]:
            fired, deadline = fired + 1, None
        if deadline is not None and e["kind"] == "cash_deposit":
            deadline = None
        if deadline is None and e["kind"] == "cash_withdrawal" and e["amt"] >= 10000:
            deadline = e["t"] + timedelta(days=14)
    return fired + (deadline is not None and deadline <= UNTIL)


def test_validate_accepts_the_rules_and_the_example(imported: dict[str, Path]) -> None:
    """`validate` exits 0 on good files and names every problem of a bad one by its path."""
    assert keymoment("validate", HERE / "berka_rules.yaml").returncode == 0
    assert keymoment("validate", HERE.parent.parent / "examples" / "rules.yaml").returncode == 0
    bad = imported["events"].parent / "bad.yaml"
    bad.write_text(
        "rules:\n  - {rule_id: a, trigger: dormancy, campaign: c, inactive: soon}\n"
        "  - {rule_id: b, trigger: nope, campaign: c}\ncampaigns: []\n"
    )
    result = keymoment("validate", bad)
    assert result.returncode == 1
    assert "rules[0] (a).inactive: expected a duration like 24h" in result.stdout
    assert "rules[1] (b).trigger: unknown trigger" in result.stdout


def opened_at(customers: Path) -> dict[str, datetime]:
    return {
        c["customer_id"]: datetime.fromisoformat(c["opened_at"].replace("Z", "+00:00"))
        for c in map(orjson.loads, customers.read_bytes().splitlines())
    }


def test_backtest_counts_match_an_independent_recomputation(
    imported: dict[str, Path], backtest: dict[str, object], feed_stops: tuple[Path, dict]
) -> None:
    """Candidates per rule from the backtest equal a brute-force count over the same events.

    Two replays: the whole file, and the file cut after June 1994 replayed to
    the same end (Berka's salaries are perfectly regular, so only a stopped
    feed makes salary_missed fire); between them every rule fires.
    """
    opened = opened_at(imported["customers"])
    fired: Counter[str] = Counter()
    for events_path, result in ((imported["events"], backtest), feed_stops):
        got = Counter(d["rule_id"] for d in result["decisions"])  # type: ignore[union-attr]
        want = expected_counts(load_events(events_path), opened)
        assert {rule: got[rule] for rule in want} == dict(want)
        fired.update(want)
    assert all(fired[rule] > 0 for rule in fired), f"a rule never fires on Berka: {fired}"


def test_backtest_reports_dead_letters_and_summary(backtest: dict[str, object]) -> None:
    """The one Berka row with amount 0 is dead-lettered as bad_amount, and the summary shows it."""
    dead = backtest["dead"]
    assert [d["reason"] for d in dead] == ["bad_amount"]  # type: ignore[union-attr]
    assert "raw" not in dead[0] and "amount" not in dead[0]  # type: ignore[index]
    stdout = backtest["stdout"]
    assert "bad_amount" in stdout and "skipped 1,154 events after --until" in stdout  # type: ignore[operator]
    assert "replayed 98,844 events" in stdout  # type: ignore[operator]


def test_backtest_decision_log_is_complete_and_clean(backtest: dict[str, object]) -> None:
    """Each decision carries its outcome, version and offer id, and no amount or counterparty."""
    decisions = backtest["decisions"]
    assert len({d["offer_id"] for d in decisions}) == len(decisions)  # type: ignore[union-attr]
    for d in decisions:  # type: ignore[union-attr]
        assert d["rule_version"] == "e2e-1" and d["outcome"] and d["event_id"]
        assert not {"amount", "counterparty", "account_id", "balance_after"} & set(d)
        assert not {"amount", "counterparty"} & set(d["attributes"])


def dormancy_arming_ids(activity: list[dict]) -> dict[datetime, str]:
    """Dormancy deadline -> arming event id, by definition, over one customer's activity.

    The input is in time order, so the watermark at each event is its time;
    of several activities at one time the last in file order arms the timer.
    """
    armed: dict[datetime, str] = {}
    last: tuple[datetime, str] | None = None
    for e in [*activity, None]:
        deadline = last[0] + timedelta(days=90) if last else None
        if deadline and deadline <= (UNTIL if e is None else e["t"]) and last:
            armed[deadline] = last[1]
        if e is not None:
            last = (e["t"], e["event_id"])
    return armed


def test_dormancy_names_the_last_activity_of_its_day(
    imported: dict[str, Path], backtest: dict[str, object]
) -> None:
    """Every gone-quiet candidate names the last activity (in file order) of its arming day.

    Berka has dates only, so several activities often share an occurred_at;
    the timer used to keep the first one's event_id. Six candidates of this
    replay have a tie whose first and last activity differ: their event_id
    and offer_id changed with the fix (issue 8).
    """
    want: dict[tuple[str, str], str] = {}
    first_differs = 0
    for cid, evs in by_customer(load_events(imported["events"])).items():
        activity = [e for e in evs if e["initiated_by"] == "customer"]
        for deadline, event_id in dormancy_arming_ids(activity).items():
            want[(cid, deadline.strftime("%Y-%m-%dT%H:%M:%SZ"))] = event_id
            first = next(e for e in activity if e["t"] == deadline - timedelta(days=90))
            first_differs += first["event_id"] != event_id
    decisions = cast(list[dict], backtest["decisions"])
    got = {
        (d["customer_id"], d["triggered_at"]): d["event_id"]
        for d in decisions
        if d["rule_id"] == "gone-quiet"
    }
    assert got == want
    assert first_differs == 6
