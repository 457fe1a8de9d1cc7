"""Shared fixtures: real servers started by the tests themselves, and the shared Berka data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import KafkaBroker, RedisServer

REPO = Path(__file__).resolve().parent.parent
BERKA = REPO.parent / "shared" / "data" / "berka"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests use distinct keys or flush it."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill and restart it."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker().start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def berka_dir() -> Path:
    """The shared Berka data; a checkout outside the workspace skips with this reason."""
    if not (BERKA / "trans_first100k.asc.gz").is_file():
        pytest.skip(f"shared Berka data not found at {BERKA} (checkout outside the workspace)")
    return BERKA
