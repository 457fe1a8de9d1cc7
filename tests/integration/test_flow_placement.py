"""Bytewax places shard keys and source partitions where `flows.placement` says.

The multi-process speed-up rests on two measured facts about Bytewax 0.21.1:
a stateful key goes to worker `siphash13(key) % workers`, and source
partitions go round-robin over the workers in sorted key order. These tests
run a real two-process cluster and fail if an upgrade changes either.
"""

from __future__ import annotations

import os
import subprocess
import sys

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic

from keymoment.flows.placement import SPREAD, bytewax_worker, shard_keys
from tests.integration.flowkit import REPO
from tests.support.servers import free_port

KEYS = shard_keys(8)
PARTS = ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl", "part-3.jsonl"]


class _Once(StatefulSourcePartition):
    def __init__(self, name: str) -> None:
        self.name, self.done = name, False

    def next_batch(self) -> list:
        if self.done:
            raise StopIteration
        self.done = True
        print(f"partition {self.name} {os.environ['WHO']}", flush=True)
        return [(key, 1) for key in KEYS]

    def snapshot(self) -> None:
        return None


class _Parts(FixedPartitionedSource):
    def list_parts(self) -> list[str]:
        return list(reversed(PARTS))  # placement follows sorted order, not listing order

    def build_part(self, step_id: str, for_part: str, resume_state: object) -> _Once:
        return _Once(for_part)


class _Where(StatefulBatchLogic):
    def on_batch(self, values: list) -> tuple[list, bool]:
        return [os.environ["WHO"]], self.RETAIN

    def snapshot(self) -> None:
        return None


def placement_flow() -> Dataflow:
    """Every partition sends one item to every shard key; each key says where it lives."""
    flow = Dataflow("placement")
    keyed = op.stateful_batch("where", op.input("in", flow, _Parts()), lambda _resume: _Where())
    op.inspect("say", keyed, lambda _step, kv: print(f"key {kv[0]} {kv[1]}", flush=True))
    return flow


def run_cluster() -> list[str]:
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    flow = "tests.integration.test_flow_placement:placement_flow"
    cmd = [sys.executable, "-m", "bytewax.run", flow, "-a", addresses]
    procs = [
        subprocess.Popen(
            [*cmd, "-i", str(i)],
            cwd=REPO,
            env=dict(os.environ, WHO=str(i)),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in (0, 1)
    ]
    lines = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        lines += out.splitlines()
    return lines


def test_shard_names_place_shard_i_on_worker_i_mod_w_for_every_divisor() -> None:
    """The salted names spread shards round-robin for every worker count dividing SPREAD."""
    for workers in (w for w in range(1, SPREAD + 1) if SPREAD % w == 0):
        assert [bytewax_worker(key, workers) for key in KEYS] == [i % workers for i in range(8)]


def test_bytewax_places_shards_and_partitions_round_robin_on_two_processes() -> None:
    """Real cluster: shard i on process i % 2, the i-th sorted partition on process i % 2."""
    lines = set(run_cluster())
    assert {f"key {key} {i % 2}" for i, key in enumerate(KEYS)} <= lines
    assert {f"partition {part} {i % 2}" for i, part in enumerate(PARTS)} <= lines
