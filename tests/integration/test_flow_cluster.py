"""Two processes on loopback, and two worker threads, decide what one process decides."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from keymoment.connectors.generator import Generator
from keymoment.flows.settings import FlowSettings

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
FLOW = "keymoment.flows.dataflow:get_flow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("cluster")
    gen = Generator(seed=21, customers=300, days=200, noise=0.01)
    events, customers = out / "events.jsonl", out / "customers.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    customers.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    return {"events": events, "customers": customers, "until": gen.until_at}


def settings_for(data: dict, out: Path) -> FlowSettings:
    return FlowSettings(
        rules=str(RULES),
        sources=[f"file:{data['events']}"],
        clock="event",
        until=data["until"],
        customers=f"file:{data['customers']}",
        decisions=f"file:{out / 'decisions.jsonl'}",
        dead_letters=f"file:{out / 'dead.jsonl'}",
        shards=6,
        batch_size=200,
    )


def decisions(out: Path) -> set[bytes]:
    rows = []
    for line in (out / "decisions.jsonl").read_bytes().splitlines():
        record = orjson.loads(line)
        record.pop("decided_at")
        rows.append(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    assert len(rows) == len(set(rows)), "a decision was written twice"
    return set(rows)


def start(settings: FlowSettings, *args: str) -> subprocess.Popen:
    env = dict(os.environ, **settings.to_env())
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", FLOW, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]


def test_two_processes_decide_what_one_process_decides(data: dict, tmp_path: Path) -> None:
    """`-i 0/1 -a` on loopback: same decision set as one process, nothing written twice."""
    one, two = tmp_path / "one", tmp_path / "two"
    finish(start(settings_for(data, one)))
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    procs = [start(settings_for(data, two), "-i", str(i), "-a", addresses) for i in (0, 1)]
    for proc in procs:
        finish(proc)
    assert len(decisions(one)) > 100
    assert decisions(two) == decisions(one)


def test_two_worker_threads_decide_what_one_worker_decides(data: dict, tmp_path: Path) -> None:
    """`-w 2`: shards spread over two workers, same decision set."""
    one, two = tmp_path / "one", tmp_path / "two"
    finish(start(settings_for(data, one)))
    finish(start(settings_for(data, two), "-w", "2"))
    assert decisions(two) == decisions(one)
