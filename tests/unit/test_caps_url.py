"""`cap_store_from_url`: the `--state` flag's forms."""

from __future__ import annotations

import pytest

from keymoment.connectors.urls import cap_store_from_url
from keymoment.state import MemoryCapStore
from keymoment.state.redis_caps import RedisCapStore


def test_state_urls_pick_the_store():
    """None and memory: give the memory store; redis:// a Redis store with its options."""
    assert isinstance(cap_store_from_url(None), MemoryCapStore)
    assert isinstance(cap_store_from_url("memory:"), MemoryCapStore)
    store = cap_store_from_url("redis://127.0.0.1:6390/2?timeout=0.5&prefix=bank1")
    assert isinstance(store, RedisCapStore) and store.prefix == "bank1"
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (6390, 2, 0.5)
    with pytest.raises(ValueError, match="unsupported state URL"):
        cap_store_from_url("postgres://x")


def test_check_reports_an_unreachable_redis_at_once():
    """check() raises CapStoreUnavailable for a port nobody listens on; memory always passes."""
    from keymoment.state import CapStoreUnavailable
    from tests.support.servers import free_port

    cap_store_from_url("memory:").check()
    with pytest.raises(CapStoreUnavailable, match="unreachable"):
        cap_store_from_url(f"redis://127.0.0.1:{free_port()}/0").check()


def test_redis_held_lists_are_opt_in_on_the_state_url():
    """`?lists=1` turns on Redis-held suppression lists; a typo is a clear error, not a default."""
    assert cap_store_from_url("redis://127.0.0.1:6390/0").lists is False  # type: ignore[attr-defined]
    assert cap_store_from_url("redis://127.0.0.1:6390/0?lists=1").lists is True  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="lists='maybe'"):
        cap_store_from_url("redis://127.0.0.1:6390/0?lists=maybe")
