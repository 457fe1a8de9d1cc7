"""`keymoment backtest`'s operator-facing edges: its JSON and HTML page, a Redis cap store
that is never the live contact history by accident, and runs that would send nothing."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis

from keymoment.connectors.generator import Generator
from tests.support.cli import keymoment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("backtest-desk")
    gen = Generator(seed=5, customers=600, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=90)
    (out / "events.jsonl").write_bytes(b"".join(b + b"\n" for b in gen.iter_bytes()))
    (out / "customers.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    return {"out": out, "events": out / "events.jsonl", "customers": out / "customers.jsonl"}


def _backtest(g: dict, *more: object) -> subprocess.CompletedProcess[str]:
    return keymoment(
        "backtest", "--rules", REPO / "examples/rules.yaml", "--events", g["events"],
        "--decisions", g["out"] / "decisions.jsonl", *more,
    )  # fmt: skip


def test_backtest_json_and_html_page_agree_with_the_decision_log(generated: dict) -> None:
    """--json counts equal the decision log; the page loads clean and shows the JSON's numbers."""
    from tests.support.pagecheck import check_page

    out = generated["out"]
    result = _backtest(
        generated, "--customers", generated["customers"],
        "--json", out / "summary.json", "--html", out / "summary.html",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    log = [orjson.loads(line) for line in (out / "decisions.jsonl").open("rb")]
    t = summary["decisions"]
    assert t["candidates"] == len(log)
    assert t["funnel"]["sent"] == sum(1 for r in log if r["outcome"] == "sent")
    assert sum(sum(d.values()) for d in t["sends_per_day"].values()) == t["funnel"]["sent"]
    for rule, outcomes in t["by_rule"].items():
        for outcome, n in outcomes.items():
            assert n == sum(1 for r in log if (r["rule_id"], r["outcome"]) == (rule, outcome))
    assert check_page(out / "summary.html", summary) > 40


def test_without_customers_the_summary_says_nothing_can_be_sent(generated: dict) -> None:
    """No reference data: every candidate no_profile, and the summary says so plainly."""
    result = _backtest(generated)
    assert result.returncode == 0, result.stderr
    assert (
        "have no customer reference data" in result.stdout and "give --customers" in result.stdout
    )


def test_headers_are_never_cut(generated: dict) -> None:
    """The outcome columns carry their whole names (`arbitration_lost`, not `arbitratio`)."""
    result = _backtest(generated, "--customers", generated["customers"])
    header = next(line for line in result.stdout.splitlines() if line.strip().startswith("rule "))
    assert "arbitration_lost" in header and "no_channel" in header


def test_a_redis_state_without_a_prefix_is_refused(generated: dict, redis_server) -> None:
    """--state redis:// alone would write into the live contact history: one line, exit 2."""
    client = redis.Redis.from_url(redis_server.url)
    before = set(client.scan_iter(match="*"))
    result = _backtest(
        generated, "--customers", generated["customers"], "--state", redis_server.url
    )
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "--prefix" in result.stderr and "Traceback" not in result.stderr
    assert set(client.scan_iter(match="*")) == before  # nothing written anywhere


def test_a_backtest_under_its_own_prefix_leaves_the_live_keys_alone(
    generated: dict, redis_server
) -> None:
    """--prefix NAME reserves under NAME only; a second run into it is warned about."""
    client = redis.Redis.from_url(redis_server.url)
    client.set("km:live-marker", "1")
    prefix = f"bt-{generated['out'].name}"
    first = _backtest(
        generated, "--customers", generated["customers"], "--state", redis_server.url,
        "--prefix", prefix,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert any(client.scan_iter(match=f"{prefix}:*"))
    assert [k.decode() for k in client.scan_iter(match="km:*")] == ["km:live-marker"]
    again = _backtest(
        generated, "--customers", generated["customers"], "--state", redis_server.url,
        "--prefix", prefix,
    )  # fmt: skip
    assert again.returncode == 0 and "already holds reservations" in again.stderr


def test_an_unreachable_cap_store_fails_in_one_line(generated: dict) -> None:
    """A Redis that does not answer: one line before the replay, as `run` does."""
    result = _backtest(generated, "--state", "redis://127.0.0.1:1/0?timeout=0.2", "--prefix", "bt")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "cannot reach the cap store" in result.stderr
