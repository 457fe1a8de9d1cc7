"""The generated journeys scenario, end to end, with the figures the README quotes.

    python bench/journeys_scenario.py [--customers 2500] [--days 150] [--seed 12] [--out DIR]

Generates the synthetic bank (with RMs and branches), backtests
examples/journeys.yaml, draws seeded responses (conversions with a true uplift
per variant, 20% of customers ignoring any first offer, lead outcomes per RM:
connectors/outcomes.py), backtests again with the conversions in the input (so
they cancel follow-ups), and prints per RM the leads allocated / not allocated
and the `report` of the second run. The same steps as
tests/e2e/test_journeys_scenario.py, which asserts on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

from keymoment.connectors.generator import Generator
from keymoment.connectors.outcomes import lead_outcomes, variant_conversions

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "examples" / "journeys.yaml"
UPLIFT = {"payroll-package": {"A": 0.10, "B": 0.25}, "payroll-nudge": {"sent": 0.1}}


def keymoment(*args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "keymoment", *map(str, args)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout


def write(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2500)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="journeys-"))
    out.mkdir(parents=True, exist_ok=True)
    gen = Generator(seed=args.seed, customers=args.customers, days=args.days)
    events = write(out / "events.jsonl", list(gen.iter_events()))
    customers = write(out / "customers.jsonl", list(gen.profiles()))
    until = gen.until_at.isoformat()
    common = ["--rules", RULES, "--customers", customers, "--until", until]
    keymoment("backtest", *common, "--events", events, "--decisions", out / "first.jsonl")
    conversions = list(variant_conversions(read(out / "first.jsonl"), UPLIFT, ignore=0.2, seed=5))
    merged = sorted(read(events) + conversions, key=lambda r: r["occurred_at"])
    write(out / "events2.jsonl", merged)
    summary = keymoment(
        "backtest", *common, "--events", out / "events2.jsonl", "--decisions", out / "second.jsonl"
    )
    log = read(out / "second.jsonl")
    leads = list(lead_outcomes(log, seed=5))
    write(out / "feedback.jsonl", conversions + leads)
    print(summary.split("sent by channel")[0])
    print_leads(log)
    report = ["--decisions", out / "second.jsonl", "--events", out / "feedback.jsonl"]
    print(keymoment("report", *report, "--window", "7d", "--product", "payroll-package"))
    print(f"files in {out}")


def print_leads(log: list[dict]) -> None:
    sent = Counter(r.get("rm_id") or r.get("pool") for r in log
                   if r["outcome"] == "sent" and r["channel"] == "rm_task")  # fmt: skip
    lost = Counter(r.get("rm_id") or r.get("pool") for r in log if r["reason"] == "not_allocated")
    print("rm_task leads per owner (allocated / not allocated):")
    for owner in sorted(set(sent) | set(lost), key=lambda o: (-sent[o], o)):
        print(f"  {owner:<14}{sent[owner]:>6}{lost[owner]:>6}")


if __name__ == "__main__":
    main()
