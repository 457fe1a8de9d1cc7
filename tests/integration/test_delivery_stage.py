"""The per-sink delivery stage against real local HTTP gateways that verify every signature.

A stalled gateway must hold up only its own stage; a full backlog, an
expired offer and a retry that would be late must each end as a dead letter
carrying the whole offer; `Retry-After` must be honoured without holding a
thread. Time that matters (expiry, Retry-After) runs on an injected clock.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from keymoment.connectors.delivery import Outbox, RetryPolicy
from keymoment.connectors.webhook import WebhookDelivery
from tests.support.gateway import Gateway

SECRET = "whsec_" + base64.b64encode(b"d" * 24).decode()
FAST = RetryPolicy(max_attempts=4, base_delay=0.02, max_delay=0.1)
T0 = 1_800_000_000.0  # the injected clock's start (2027-01-15)


def offers(n: int, tag: str = "", expires_at: float | None = None) -> list[dict]:
    stamp = None if expires_at is None else datetime.fromtimestamp(expires_at, UTC).isoformat()
    return [
        {
            "offer_id": hashlib.sha256(f"{tag}{i}".encode()).hexdigest()[:32],
            "customer_id": f"c{i}",
            "channel": "sms",
            "campaign_id": "win-back",
            "rule_id": "gone-quiet",
            "expires_at": stamp,
            "attributes": {"n": i},
        }
        for i in range(n)
    ]


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll for a condition the threads bring about (a deadline, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def held() -> Iterator[tuple[Gateway, threading.Event]]:
    """A gateway that answers nothing until the test sets the event (then 200 to all)."""
    release = threading.Event()

    def script(offer_id: str, attempt: int) -> int:
        release.wait(30)
        return 200

    gw = Gateway(SECRET, script).start()
    yield gw, release
    release.set()
    gw.stop()


@pytest.fixture
def healthy() -> Iterator[Gateway]:
    gw = Gateway(SECRET).start()
    yield gw
    gw.stop()


def test_a_stalled_gateway_holds_up_only_its_own_stage(held, healthy) -> None:
    """While one gateway answers nothing, another stage delivers everything it was given."""
    stalled_gw, release = held
    stalled = WebhookDelivery(stalled_gw.url, SECRET, max_in_flight=2, retry=FAST)
    fine = WebhookDelivery(healthy.url, SECRET, max_in_flight=2, retry=FAST)
    slow_box, fine_box = Outbox(), Outbox()
    for a, b in zip(offers(50, "s"), offers(50, "h"), strict=True):
        stalled.stage.submit(a, slow_box)  # returns at once even though nothing is answered
        fine.stage.submit(b, fine_box)
    assert fine_box.wait(30)
    assert len(healthy.accepted) == 50 and fine_box.take_dead() == []
    assert len(slow_box) == 50 and not stalled_gw.accepted
    release.set()
    assert slow_box.wait(30)
    assert len(stalled_gw.accepted) == 50 and set(stalled_gw.accepted.values()) == {1}
    stalled.close(), fine.close()


def test_a_full_backlog_dead_letters_the_overflow_with_the_whole_offer(held) -> None:
    """Past max_backlog unsettled offers each new one is `channel_backlog_full`, nothing lost."""
    gw, release = held
    delivery = WebhookDelivery(gw.url, SECRET, max_in_flight=2, retry=FAST, max_backlog=10)
    box, sent = Outbox(), offers(25)
    for offer in sent:
        delivery.stage.submit(offer, box)
    dead = box.take_dead()
    assert len(dead) == 15 and len(box) == 10
    assert all(d["reason"] == "channel_backlog_full" for d in dead)
    assert [d["offer"] for d in dead] == sent[10:]
    release.set()
    assert box.wait(30) and box.take_dead() == []
    assert set(gw.accepted) == {o["offer_id"] for o in sent[:10]}
    assert delivery.stage.peak_backlog == 10 and delivery.stage.backlog == 0
    delivery.close()


def test_an_offer_past_expires_at_is_dead_lettered_never_sent(healthy) -> None:
    """An offer whose expires_at has passed on the engine's clock never reaches the gateway."""
    clock = Clock()
    delivery = WebhookDelivery(healthy.url, SECRET, retry=FAST, clock=clock)
    late, fresh = offers(5, "late", expires_at=T0 - 1), offers(5, "fresh", expires_at=T0 + 60)
    box = Outbox()
    for offer in late + fresh:
        delivery.stage.submit(offer, box)
    assert box.wait(30)
    dead = box.take_dead()
    assert {d["offer_id"] for d in dead} == {o["offer_id"] for o in late}
    assert all(d["reason"] == "expired_in_delivery" and d["attempts"] == 0 for d in dead)
    assert set(healthy.attempts) == {o["offer_id"] for o in fresh}
    delivery.close()


def test_retry_after_is_honoured_and_a_waiting_retry_holds_no_thread() -> None:
    """A 429 with Retry-After: 30 waits exactly 30 s of the clock; meanwhile others go through."""
    first = offers(1, "first")[0]["offer_id"]
    gw = Gateway(SECRET, lambda o, n: 429 if o == first and n == 1 else 200, retry_after="30")
    gw.start()
    clock = Clock()
    delivery = WebhookDelivery(gw.url, SECRET, max_in_flight=1, retry=FAST, clock=clock)
    try:
        waiting, others = Outbox(), Outbox()
        delivery.stage.submit(offers(1, "first")[0], waiting)
        until(lambda: delivery.retries == 1)
        for offer in offers(5, "other"):
            delivery.stage.submit(offer, others)
        assert others.wait(30) and len(gw.accepted) == 5  # the one thread was free
        assert len(waiting) == 1 and delivery.stage.next_due() == T0 + 30
        clock.now = T0 + 30
        delivery.stage.wake()
        assert waiting.wait(30) and gw.attempts[first] == 2 and gw.accepted[first] == 1
    finally:
        delivery.close()
        gw.stop()


def test_a_retry_that_would_pass_expires_at_is_dead_lettered_at_once() -> None:
    """Retry-After beyond the offer's expires_at: `expired_in_delivery` after one attempt."""
    gw = Gateway(SECRET, lambda o, n: 429, retry_after="100").start()
    clock = Clock()
    delivery = WebhookDelivery(gw.url, SECRET, retry=FAST, clock=clock)
    try:
        box = Outbox()
        delivery.stage.submit(offers(1, expires_at=T0 + 50)[0], box)
        assert box.wait(30)
        (dead,) = box.take_dead()
        assert (dead["reason"], dead["status"], dead["attempts"]) == ("expired_in_delivery", 429, 1)
        assert sum(gw.attempts.values()) == 1
    finally:
        delivery.close()
        gw.stop()


def test_5xx_and_timeouts_are_retried_until_accepted_once() -> None:
    """500s and replies slower than the client timeout are retried; each offer accepted once."""
    from tests.support.gateway import SLOW

    def script(offer_id: str, attempt: int) -> int:
        bucket = int(offer_id[:2], 16) % 3
        return (500, SLOW, 200)[bucket] if attempt == 1 else 200

    gw = Gateway(SECRET, script, slow_seconds=0.5).start()
    delivery = WebhookDelivery(gw.url, SECRET, timeout=0.2, retry=FAST)
    try:
        sent = offers(30)
        assert delivery.deliver_batch(sent) == []
        assert set(gw.accepted) == {o["offer_id"] for o in sent}
        assert set(gw.accepted.values()) == {1} and delivery.retries > 0
    finally:
        delivery.close()
        gw.stop()
