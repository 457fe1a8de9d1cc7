"""`keymoment report`: conversion uplift of treated over control, from a decision log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from keymoment.commands.report import Arm, uplift


def _decision(campaign: str, customer: str, outcome: str, at: str) -> dict:
    return {
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
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keymoment",
            "report",
            "--decisions",
            str(decisions),
            "--events",
            str(events),
            "--product",
            "fund",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("wealth"))
    assert row.split()[:5] == ["wealth", "2", "50.0%", "2", "0.0%"]


def test_uplift_interval_and_p_value_follow_the_normal_approximation() -> None:
    """A large difference is significant; equal rates give a zero difference and p = 1."""
    diff, half, p = uplift(Arm(1000, 200), Arm(1000, 100))
    assert round(diff, 3) == 0.1 and 0.02 < half < 0.04 and p < 1e-6
    diff, _, p = uplift(Arm(100, 10), Arm(100, 10))
    assert diff == 0 and p == 1.0
