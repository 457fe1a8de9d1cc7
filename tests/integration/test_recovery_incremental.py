"""Incremental snapshots through real Bytewax runs: kill -9 mid-stream, resume, same decisions.

As tests/integration/test_recovery_kill.py, with the flow's incremental
snapshots on (`snapshot_dir`, flows/snapshots.py): Bytewax stores only the
chain of segment names, the segments live beside its recovery directory, a
new base is written whenever the parts outgrow a third of the base, and
segments leave after 2 s. A real `python -m bytewax.run` is killed with
SIGKILL three times while writing and resumed; the offer ids of the decision
log and the offers file equal an uninterrupted run's. Then the store's bad
input: a corrupt or a missing segment makes the resume fail with one line
naming the file and exit status 2, no traceback. And a rules switch that
re-reads every state (a removed rule): killed about a second after it, while
the chain names the switch segment (the switch is replayed on resume) or the
base a forked child wrote since, the resumed run decides what an
uninterrupted one decides.
"""

from __future__ import annotations

import functools
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.flowkit import (
    RULES,
    bytewax_run,
    offer_ids,
    records,
    replay_settings,
    start,
    write_generated,
)
from tests.integration.test_recovery_kill import killed_and_resumed
from tests.integration.test_rollout_flow import _wait_for_version, switch_time, v8, versions_of


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("incremental")
    # 8000 customers: with 4000 the flow, faster since the fifth session, could finish
    # before its third kill
    return write_generated(out, customers=8000, days=240, seed=37, noise=0.005)


@pytest.fixture(scope="module")
def killed(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted run, and one killed three times and resumed, both to the end."""
    tmp = tmp_path_factory.mktemp("runs")
    clean, crashed, recovery = tmp / "clean", tmp / "crashed", tmp / "recovery"
    bytewax_run(replay_settings(data, clean, shards=4, batch_size=100), timeout=600)
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    settings = replay_settings(
        data, crashed, shards=4, batch_size=100, recovery=True,
        snapshot_dir=str(recovery / "segments"), snapshot_keep_seconds=2.0,
        snapshot_compact_ratio=0.3,
    )  # fmt: skip
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    killed_and_resumed(settings, args, crashed / "decisions.jsonl", random.Random(11))
    return {"clean": clean, "crashed": crashed, "recovery": recovery, "settings": settings,
            "args": args}  # fmt: skip


def test_kill_9_with_incremental_snapshots_keeps_every_decision(killed: dict) -> None:
    clean, crashed = killed["clean"], killed["crashed"]
    expected = offer_ids(clean / "decisions.jsonl")
    assert len(expected) > 1000
    assert set(offer_ids(crashed / "decisions.jsonl")) == set(expected)
    assert set(offer_ids(crashed / "offers.jsonl")) == set(offer_ids(clean / "offers.jsonl"))
    segments = sorted((killed["recovery"] / "segments").glob("*/*"))
    kinds = {p.suffix for p in segments}
    assert ".base" in kinds, kinds  # the chains Bytewax holds are made of segment files
    assert len(segments) < 200, len(segments)  # cleanup keeps a few chains, not every epoch


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_bad_segment_is_one_error_line(killed: dict, tmp_path: Path, damage: str) -> None:
    recovery = tmp_path / "recovery"
    shutil.copytree(killed["recovery"], recovery)
    # The segments only: a compaction child killed with its flow can leave a `.tmp` file
    for path in [p for p in (recovery / "segments").glob("*/*") if p.suffix in (".base", ".part")]:
        if damage == "missing":
            path.unlink()
        else:
            raw = bytearray(path.read_bytes())
            raw[-1] ^= 0xFF
            path.write_bytes(bytes(raw))
    settings = killed["settings"].model_copy(update={"snapshot_dir": str(recovery / "segments")})
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    proc = start(settings, *args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    word = "is corrupt" if damage == "corrupt" else "is missing"
    assert lines[0].startswith("keymoment: cannot resume") and word in lines[0], lines[0]


def test_kill_9_right_after_a_switch_decides_as_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 8 (a removed rule: every state re-read) at 40 % of the stream; killed 1.1-1.6 s
    after its first decision (one or two epochs later), then resumed to the end."""
    monkeypatch.setenv("KEYMOMENT_LIST_DIRS", str(RULES.parent / "lists"))
    data = write_generated(tmp_path, customers=12000, days=240, seed=31)
    flow = functools.partial(
        replay_settings, data, shards=4, batch_size=100,
        rollouts=[f"{switch_time(data, 0.4)}={v8(tmp_path)}"],
    )  # fmt: skip
    bytewax_run(flow(tmp_path / "clean"), timeout=600)
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    settings = flow(
        tmp_path / "crashed", recovery=True, snapshot_dir=str(recovery / "segments"),
        snapshot_keep_seconds=2.0,
    )  # fmt: skip
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    proc = start(settings, *args)
    try:
        _wait_for_version(proc, tmp_path / "crashed" / "decisions.jsonl", 8)
        time.sleep(random.Random(5).uniform(1.1, 1.6))
        assert proc.poll() is None, "the flow finished before the kill: use more input"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()  # never left running behind a failed assertion
    kinds = {p.suffix for p in (recovery / "segments").glob("*/*")}
    assert ".switch" in kinds, kinds  # the switch wrote no base in the shard's call
    final = start(settings, *args)
    try:
        _, err = final.communicate(timeout=600)
    finally:
        final.kill()
    assert final.returncode == 0, err[-2000:]
    assert "compaction failed" not in err, err[-2000:]
    expected = records(tmp_path / "clean" / "decisions.jsonl")
    assert versions_of(expected) == {7, 8}
    assert records(tmp_path / "crashed" / "decisions.jsonl") == expected
