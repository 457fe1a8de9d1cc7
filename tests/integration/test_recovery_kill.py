"""kill -9 mid-stream and restart with Bytewax recovery: no candidate lost, same offer ids.

A real `python -m bytewax.run` process reads a JSONL file on the event clock
with recovery snapshots every second and is killed with SIGKILL three times
while it is writing; each restart resumes from the recovery directory. The
offer ids in the decision log and in the offers sink must equal those of an
uninterrupted run: nothing missing, nothing extra.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keymoment.flows.settings import FlowSettings
from tests.integration.flowkit import (
    bytewax_run,
    offer_ids,
    replay_settings,
    start,
    write_generated,
)

KILLS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("recovery")
    return write_generated(out, customers=4000, days=240, seed=31, noise=0.005)


def wait_for_output(proc: subprocess.Popen, path: Path, timeout: float = 60) -> None:
    """Until the flow has written something: it is mid-stream, past its first epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the flow ended before it could be killed: use more input"
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise AssertionError("no output within the timeout")


def killed_and_resumed(
    settings: FlowSettings, args: tuple[str, ...], output: Path, rng: random.Random
) -> None:
    """`KILLS` runs killed with SIGKILL once `output` has data, then one to the end."""
    for _ in range(KILLS):
        proc = start(settings, *args)
        wait_for_output(proc, output)
        time.sleep(rng.uniform(0.5, 1.5))
        assert proc.poll() is None, "the flow finished before the kill: use more input"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = start(settings, *args)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-2000:]


def test_kill_9_three_times_loses_no_candidate_and_keeps_offer_ids(
    data: dict, tmp_path: Path
) -> None:
    """Offer ids after three SIGKILLs and resumes equal those of an uninterrupted run."""
    clean, crashed, recovery = tmp_path / "clean", tmp_path / "crashed", tmp_path / "recovery"
    bytewax_run(replay_settings(data, clean, shards=4, batch_size=100), timeout=600)
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    settings = replay_settings(data, crashed, shards=4, batch_size=100, recovery=True)
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    killed_and_resumed(settings, args, crashed / "decisions.jsonl", random.Random(7))
    expected = offer_ids(clean / "decisions.jsonl")
    assert len(expected) > 1000
    assert set(offer_ids(crashed / "decisions.jsonl")) == set(expected)
    assert set(offer_ids(crashed / "offers.jsonl")) == set(offer_ids(clean / "offers.jsonl"))
