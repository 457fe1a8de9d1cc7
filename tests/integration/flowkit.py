"""Shared helpers of the flow tests: generated input, `bytewax.run` subprocesses, canonical records.

Used by test_flow_equivalence.py, test_flow_cluster.py, test_flow_partitions.py
and test_recovery_kill.py, which all start the real flow with `python -m
bytewax.run keymoment.flows.dataflow:get_flow` and compare what it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from keymoment.connectors.generator import Generator
from keymoment.flows.settings import FlowSettings
from keymoment.flows.stamp import shard_of
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "examples" / "rules.yaml"
FLOW = "keymoment.flows.dataflow:get_flow"


def write_generated(
    out: Path, customers: int, days: int, seed: int = 11, noise: float = 0.01
) -> dict:
    """Seeded events and customer profiles as JSONL files; `until` is the generator's end."""
    gen = Generator(seed=seed, customers=customers, days=days, noise=noise)
    events, profiles = out / "events.jsonl", out / "customers.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    profiles.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    return {"events": events, "customers": profiles, "until": gen.until_at.isoformat()}


def replay_settings(data: dict, out: Path, rules: Path = RULES, **extra: object) -> FlowSettings:
    """The flow over `write_generated` output on the event clock, writing its outputs to `out`."""
    return FlowSettings(
        rules=str(rules),
        sources=[f"file:{data['events']}"],
        clock="event",
        until=data["until"],
        customers=f"file:{data['customers']}",
        decisions=f"file:{out / 'decisions.jsonl'}",
        dead_letters=f"file:{out / 'dead.jsonl'}",
        sinks={"*": f"file:{out / 'offers.jsonl'}"},
        **extra,  # type: ignore[arg-type]
    )


def split_by_customer(events: Path, out: Path, parts: int) -> list[Path]:
    """The events in `parts` files by the shard hash of their customer, in input order.

    Lines without a readable customer (the generator's noise) go to the
    first file: they are dead letters wherever they are read.
    """
    files = [out / f"part-{i}.jsonl" for i in range(parts)]
    chunks: list[list[bytes]] = [[] for _ in range(parts)]
    for line in events.read_bytes().splitlines():
        try:
            part = shard_of(orjson.loads(line)["customer_id"], parts)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            part = 0
        chunks[part].append(line + b"\n")
    for path, lines in zip(files, chunks, strict=True):
        path.write_bytes(b"".join(lines))
    return files


def canonical(record: dict) -> bytes:
    """One record as sorted-key JSON without the processing-time `decided_at`."""
    record = orjson.loads(orjson.dumps(record))  # datetimes as the sinks write them
    record.pop("decided_at", None)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def records(path: Path, unique: bool = False) -> set[bytes]:
    """Each record as canonical JSON, without the processing-time `decided_at`.

    `unique`: also assert that no record was written twice.
    """
    rows = [canonical(orjson.loads(line)) for line in path.read_bytes().splitlines()]
    if unique:
        assert len(rows) == len(set(rows)), f"a record of {path.name} was written twice"
    return set(rows)


def offer_ids(path: Path) -> list[str]:
    return [orjson.loads(line)["offer_id"] for line in path.read_bytes().splitlines()]


def start(settings: FlowSettings, *args: str) -> subprocess.Popen:
    """`python -m bytewax.run` of the flow with these settings, stderr kept for the failure."""
    return subprocess.Popen(
        [sys.executable, "-m", "bytewax.run", FLOW, *args],
        env=dict(os.environ, **settings.to_env()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]


def bytewax_run(settings: FlowSettings, *args: str, timeout: float = 300) -> None:
    finish(start(settings, *args), timeout)


def cluster_run(settings: FlowSettings, processes: int = 2, timeout: float = 300) -> None:
    """The flow as `processes` processes on loopback (`-i/-a`), until all have finished."""
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    procs = [start(settings, "-i", str(i), "-a", addresses) for i in range(processes)]
    for proc in procs:
        finish(proc, timeout)
