"""The live flow on the event clock decides exactly what the backtest decides.

Reference: the `keymoment backtest` command itself, and its replay
(`keymoment.flows.replay.Replay`, the one driver with one shard over the
events in order) run in-process with the contact policy the flow builds.
Flow: `python -m bytewax.run keymoment.flows.dataflow:get_flow` in a
subprocess, and `run_main` with random shard counts and batch sizes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keymoment.connectors.customers import read_profiles
from keymoment.flows.connect import policy_for, rules_from
from keymoment.flows.dataflow import build_flow
from keymoment.flows.replay import Replay
from keymoment.flows.settings import FlowSettings
from tests.integration.flowkit import (
    REPO,
    RULES,
    bytewax_run,
    canonical,
    records,
    replay_settings,
    write_generated,
)

BERKA_RULES = REPO / "tests" / "e2e" / "berka_rules.yaml"
BERKA_UNTIL = "1994-10-30T23:59:59+01:00"


def reference(rules: Path, data: dict, out: Path) -> tuple[set[bytes], set[bytes]]:
    """Decisions and dead letters of the backtest's replay loop with the flow's policy."""
    ruleset = rules_from(str(rules))
    profiles, _ = read_profiles(data["customers"])
    until = FlowSettings(rules=str(rules), sources=["x"], until=data["until"]).until
    replay = Replay(ruleset, profiles, policy_for(ruleset, None), until=until)
    decisions, dead = set(), set()
    for output in replay.outputs([str(data["events"])]):
        decisions |= {canonical(r) for r in output.decision_records()}
        dead |= {canonical(r) for r in output.dead_letters}
    return decisions, dead


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_generated(tmp_path_factory.mktemp("gen"), customers=400, days=240)


def test_bytewax_run_matches_backtest_replay_on_generated_data(
    generated: dict, tmp_path: Path
) -> None:
    """`python -m bytewax.run` on the event clock writes the replay's decisions and dead letters."""
    settings = replay_settings(generated, tmp_path, shards=4, batch_size=97)
    bytewax_run(settings)
    decisions, dead = reference(RULES, generated, tmp_path)
    assert len(decisions) > 100 and any(b'"trigger":"dormancy"' in d for d in decisions)
    assert records(tmp_path / "decisions.jsonl") == decisions
    assert records(tmp_path / "dead.jsonl") == dead
    sent = {orjson.loads(d)["offer_id"] for d in decisions if b'"outcome":"sent"' in d}
    assert {
        orjson.loads(o)["offer_id"] for o in (tmp_path / "offers.jsonl").read_bytes().splitlines()
    } == sent


def test_flow_decisions_equal_keymoment_backtest_command(generated: dict, tmp_path: Path) -> None:
    """`keymoment backtest` and the flow write the same decision log and dead letters."""
    run_main(build_flow(replay_settings(generated, tmp_path, shards=3)))
    out, dead = tmp_path / "backtest.jsonl", tmp_path / "backtest-dead.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keymoment",
            "backtest",
            "--rules",
            str(RULES),
            "--events",
            str(generated["events"]),
            "--customers",
            str(generated["customers"]),
            "--until",
            generated["until"],
            "--decisions",
            str(out),
            "--dead-letters",
            str(dead),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "decisions.jsonl") == records(out)
    assert records(tmp_path / "dead.jsonl") == records(dead)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("small")
    data = write_generated(out, customers=60, days=200, seed=5)
    data["reference"] = reference(RULES, data, out)
    return data


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shards=st.integers(1, 7), batch=st.integers(1, 400), lateness=st.sampled_from([0, 1]))
def test_any_shard_count_and_batch_size_gives_the_replay_decisions(
    small: dict, tmp_path_factory: pytest.TempPathFactory, shards: int, batch: int, lateness: int
) -> None:
    """Shards and batch boundaries never change a decision: timers fire where the replay fires."""
    out = tmp_path_factory.mktemp("run")
    rules, data = RULES, small
    if lateness:
        rules = out / "rules.yaml"
        text = RULES.read_text().replace("allowed_lateness: 0s", "allowed_lateness: 6h")
        rules.write_text(text)
        shutil.copytree(RULES.parent / "lists", out / "lists")  # list files sit beside the rules
        data = {**small, "reference": reference(rules, small, out)}
    run_main(build_flow(replay_settings(data, out, rules, shards=shards, batch_size=batch)))
    assert records(out / "decisions.jsonl") == data["reference"][0]
    assert records(out / "dead.jsonl") == data["reference"][1]


def test_bytewax_run_matches_backtest_replay_on_berka(berka_dir: Path, tmp_path: Path) -> None:
    """On the shared real Berka data the flow decides exactly what the replay decides."""
    data = {
        "events": tmp_path / "events.jsonl.gz",
        "customers": tmp_path / "customers.jsonl",
        "until": BERKA_UNTIL,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keymoment",
            "import",
            "berka",
            "--trans",
            str(berka_dir / "trans_first100k.asc.gz"),
            "--accounts",
            str(berka_dir / "account.asc"),
            "--events",
            str(data["events"]),
            "--customers",
            str(data["customers"]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    bytewax_run(replay_settings(data, tmp_path, BERKA_RULES, shards=3))
    decisions, dead = reference(BERKA_RULES, data, tmp_path)
    assert len(decisions) > 1000
    assert records(tmp_path / "decisions.jsonl") == decisions
    assert records(tmp_path / "dead.jsonl") == dead
