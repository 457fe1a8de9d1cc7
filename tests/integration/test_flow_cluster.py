"""Two processes on loopback, and two worker threads, decide what one process decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.flowkit import (
    bytewax_run,
    cluster_run,
    records,
    replay_settings,
    write_generated,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_generated(tmp_path_factory.mktemp("cluster"), customers=300, days=200, seed=21)


def decisions(out: Path) -> set[bytes]:
    return records(out / "decisions.jsonl", unique=True)


def test_two_processes_decide_what_one_process_decides(data: dict, tmp_path: Path) -> None:
    """`-i 0/1 -a` on loopback: same decision set as one process, nothing written twice."""
    one, two = tmp_path / "one", tmp_path / "two"
    bytewax_run(replay_settings(data, one, shards=6, batch_size=200))
    cluster_run(replay_settings(data, two, shards=6, batch_size=200))
    assert len(decisions(one)) > 100
    assert decisions(two) == decisions(one)


def test_two_worker_threads_decide_what_one_worker_decides(data: dict, tmp_path: Path) -> None:
    """`-w 2`: shards spread over two workers, same decision set."""
    one, two = tmp_path / "one", tmp_path / "two"
    bytewax_run(replay_settings(data, one, shards=6, batch_size=200))
    bytewax_run(replay_settings(data, two, shards=6, batch_size=200), "-w", "2")
    assert decisions(two) == decisions(one)
