"""A scheduled rollout through the real dataflow (issue 10): any shards, batches, processes.

The reference is the backtest's replay with the same `--rollout`. The Bytewax
flow on the event clock must decide exactly the same with any shard count and
batch size, as two processes (both of which switch at the same watermark
rise), and after a kill -9 past the switch when restarted *without* the
`--rollout` argument: then only the recovery snapshot knows version 8.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from keymoment.connectors.customers import read_profiles
from keymoment.flows.connect import policy_for
from keymoment.flows.owners import placement_for
from keymoment.flows.replay import Replay
from keymoment.flows.settings import FlowSettings
from keymoment.flows.stamp import shard_of
from keymoment.flows.versioning import Versions
from keymoment.rollout.schedule import schedule
from keymoment.rollout.versions import RulesVersion
from tests.integration.flowkit import (
    RULES,
    bytewax_run,
    canonical,
    cluster_run,
    records,
    replay_settings,
    start,
    write_generated,
)


def v8(out: Path) -> Path:
    """Version 8: a higher deposit threshold, and the dormancy rule removed (timers dropped)."""
    text = RULES.read_text().replace("version: 7", "version: 8", 1)
    text = text.replace("min_amount: 50000", "min_amount: 80000", 1)
    start_at = text.index("  - rule_id: gone-quiet")
    end_at = text.index("  - rule_id:", start_at + 1)
    text = text[:start_at] + text[end_at:]
    path = out / "v8.yaml"
    path.write_text(text.replace("lists/", f"{RULES.parent}/lists/"))
    return path


def switch_time(data: dict, share: float) -> str:
    """The occurred_at of the event `share` of the way through the file."""
    lines = data["events"].read_bytes().splitlines()
    for line in lines[int(len(lines) * share) :]:
        try:
            return orjson.loads(line)["occurred_at"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    raise AssertionError("no event")


def reference(data: dict, rollout: str) -> set[bytes]:
    """The backtest's replay with the same schedule."""
    initial = RulesVersion.read(str(RULES))
    profiles, _ = read_profiles(data["customers"])
    until = FlowSettings(rules=str(RULES), sources=["x"], until=data["until"]).until
    versions = Versions(initial, schedule([rollout], []))
    policy = policy_for(initial.rules, None)
    replay = Replay(initial.rules, profiles, policy, until=until, versions=versions)
    return {
        canonical(r)
        for out in replay.outputs([str(data["events"])])
        for r in out.decision_records()
    }


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("rollout")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("KEYMOMENT_LIST_DIRS", str(RULES.parent / "lists"))
    data = write_generated(out, customers=300, days=200, seed=21)
    rollout = f"{switch_time(data, 0.5)}={v8(out)}"
    expected = reference(data, rollout)
    yield {"data": data, "rollout": rollout, "expected": expected, "at": rollout.split("=")[0]}
    monkey.undo()


def versions_of(decisions: set[bytes]) -> set[int]:
    return {orjson.loads(d)["rule_version"] for d in decisions}


@pytest.mark.parametrize(("shards", "batch"), [(1, 1000), (5, 37)])
def test_any_shards_and_batch_size_decide_what_the_backtest_decides(case, tmp_path, shards, batch):
    """The flow with the rollout equals the replay with it, whatever the shards and batches."""
    settings = replay_settings(
        case["data"], tmp_path, shards=shards, batch_size=batch, rollouts=[case["rollout"]]
    )
    bytewax_run(settings)
    got = records(tmp_path / "decisions.jsonl", unique=True)
    assert versions_of(case["expected"]) == {7, 8}
    assert got == case["expected"]
    late = [orjson.loads(d) for d in got if orjson.loads(d)["triggered_at"] >= case["at"]]
    assert late and {d["rule_version"] for d in late} == {8}
    assert not [d for d in late if d["rule_id"] == "gone-quiet"]  # removed: none fires after T


def test_two_processes_switch_at_the_same_watermark_rise(case, tmp_path):
    """Both processes' first version-8 decisions are the replay's: same rise, same result."""
    settings = replay_settings(
        case["data"], tmp_path, shards=6, batch_size=200, rollouts=[case["rollout"]]
    )
    cluster_run(settings)
    got = records(tmp_path / "decisions.jsonl", unique=True)
    assert got == case["expected"]
    profiles, _ = read_profiles(case["data"]["customers"])
    placement = placement_for(RulesVersion.read(str(RULES)).rules, profiles) or (lambda c: c)
    by_process: dict[int, list[dict]] = {0: [], 1: []}
    for d in map(orjson.loads, got):
        if d["rule_version"] == 8:
            by_process[shard_of(placement(d["customer_id"]), 6) % 2].append(d)
    firsts = [min(ds, key=lambda d: d["triggered_at"]) for ds in by_process.values()]
    assert all(f["triggered_at"] >= case["at"] for f in firsts)  # neither switched early
    before = [orjson.loads(d) for d in got if orjson.loads(d)["triggered_at"] < case["at"]]
    assert before and {d["rule_version"] for d in before} == {7}  # neither switched late


def test_kill_9_after_the_switch_resumes_on_version_8_from_the_snapshot(tmp_path):
    """Killed after v8 took effect, restarted without --rollout: decisions as uninterrupted."""
    monkey = pytest.MonkeyPatch()
    monkey.setenv("KEYMOMENT_LIST_DIRS", str(RULES.parent / "lists"))
    started: list[subprocess.Popen] = []
    try:
        # enough input that a quiet machine is still replaying 2.5 s after the switch
        data = write_generated(tmp_path, customers=12000, days=240, seed=31)
        rollout = f"{switch_time(data, 0.15)}={v8(tmp_path)}"
        clean, crashed, recovery = tmp_path / "clean", tmp_path / "crashed", tmp_path / "recovery"
        bytewax_run(
            replay_settings(data, clean, shards=4, batch_size=100, rollouts=[rollout]), timeout=600
        )
        recovery.mkdir()
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
        args = ("-r", str(recovery), "-s", "1", "-b", "0")
        first = replay_settings(
            data, crashed, shards=4, batch_size=100, recovery=True, rollouts=[rollout]
        )
        proc = start(first, *args)
        started.append(proc)
        _wait_for_version(proc, crashed / "decisions.jsonl", 8)
        time.sleep(2.5)  # past at least two snapshots taken after the switch
        assert proc.poll() is None, "the flow finished before the kill: use more input"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = replay_settings(
            data, crashed, shards=4, batch_size=100, recovery=True
        )  # no --rollout
        final = start(again, *args)
        started.append(final)
        _, err = final.communicate(timeout=600)
        assert final.returncode == 0, err[-2000:]
    finally:
        monkey.undo()
        for running in started:  # never leave a flow running behind a failed test
            running.kill()
    expected = records(clean / "decisions.jsonl")
    assert versions_of(expected) == {7, 8}
    assert records(crashed / "decisions.jsonl") == expected


def _wait_for_version(
    proc: subprocess.Popen, path: Path, version: int, timeout: float = 600
) -> None:
    """Wait for the first decision of `version`; the flow is killed if it never comes.

    The timeout is generous (a loaded 2-core machine replays slowly): it only
    bounds a failing run, a passing one returns at the first such decision.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the flow ended before the switch"
        if path.exists() and f'"rule_version":{version}'.encode() in path.read_bytes():
            return
        time.sleep(0.05)
    raise AssertionError("no decision of the new version within the timeout")
