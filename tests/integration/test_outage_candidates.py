"""No candidate vanishes when the cap store fails during a run (issue 8, section 0).

`keymoment run --clock event --until ... --state redis://...` is run over the
same generated input once fault-free and then under faults at random times
(the Redis server SIGKILLed and restarted, SIGSTOPped and continued). The only
assertion: the set of candidates in the decision log equals the fault-free
run's. Outcomes may differ (a would-be-sent candidate can expire while it
waits); a missing or extra candidate may not.

CI runs `KM_OUTAGE_RUNS` timings (3 by default: one stopping Redis for good
before the end of input, where candidates used to vanish, then random ones).
`KM_OUTAGE_RUNS=30 python -m pytest tests/integration/test_outage_candidates.py`
runs more.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.integration.flowkit import RULES, write_generated
from tests.support.servers import RedisServer

RUNS = int(os.environ.get("KM_OUTAGE_RUNS", "3"))
Fault = tuple[float, Callable[[RedisServer], None]]


def sigkill(server: RedisServer) -> None:
    server.kill()


def restart(server: RedisServer) -> None:
    if server.proc is None or server.proc.poll() is not None:
        server.start()


def sigstop(server: RedisServer) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGSTOP)


def sigcont(server: RedisServer) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_generated(tmp_path_factory.mktemp("outage"), customers=800, days=240)


def run(data: dict, out: Path, faults: list[Fault]) -> tuple[set[str], float]:
    """One `keymoment run` under `faults`; its candidates and how long it ran after starting.

    Fault times count from the first decision written (the flow is up and its start
    check of the server is past), so a fault never hits the one-line startup error.
    """
    server = RedisServer().start()
    decisions = out / "decisions.jsonl"
    argv = [sys.executable, "-m", "keymoment", "run", "--rules", str(RULES)]
    argv += ["--source", f"file:{data['events']}", "--customers", f"file:{data['customers']}"]
    argv += ["--clock", "event", "--until", data["until"], "--batch-size", "200"]
    argv += ["--state", server.url, "--decisions", f"file:{decisions}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = up(proc, decisions)
        for at, action in sorted(faults, key=lambda f: f[0]):
            try:
                proc.wait(timeout=max(at - (time.monotonic() - started), 0))
            except subprocess.TimeoutExpired:
                action(server)
        _, err = proc.communicate(timeout=300)
        took = time.monotonic() - started
    finally:
        sigcont(server)
        server.stop()
    assert proc.returncode == 0, err[-2000:]
    return {orjson.loads(line)["offer_id"] for line in decisions.open("rb")}, took


def up(proc: subprocess.Popen, decisions: Path) -> float:
    """When the first decision appeared (polling the file while the process runs)."""
    while proc.poll() is None and not (decisions.exists() and decisions.stat().st_size):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.02)
    return time.monotonic()


def timings(length: float, runs: int, seed: int = 8) -> list[list[Fault]]:
    """Over the end of input first (Redis stopped and never continued while the run lasts:
    what was parked must still be decided, after the flow's 10 s end-of-input wait),
    then random."""
    rng = random.Random(seed)
    plans: list[list[Fault]] = [[(0.8 * length, sigstop)]]
    while len(plans) < runs:
        kill_at, stop_at = rng.uniform(0.2, 1.1) * length, rng.uniform(0.2, 1.1) * length
        plans.append(
            [
                (kill_at, sigkill),
                (kill_at + rng.uniform(0.2, 3.0), restart),
                (stop_at, sigstop),
                (stop_at + rng.uniform(0.2, 3.0), sigcont),
            ]
        )
    return plans[:runs]


def test_the_decision_log_holds_every_candidate_under_random_store_faults(data, tmp_path):
    """Kill, restart, stop and continue Redis at random times: the same set of candidates."""
    (tmp_path / "ref").mkdir()
    reference, length = run(data, tmp_path / "ref", [])
    assert len(reference) > 500
    for n, faults in enumerate(timings(length, RUNS)):
        out = tmp_path / f"fault-{n}"
        out.mkdir()
        got, _ = run(data, out, faults)
        assert got == reference, (n, [(round(t, 2), f.__name__) for t, f in faults])
