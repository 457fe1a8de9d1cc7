"""Webhook delivery to a real local HTTP gateway that verifies signatures with svix."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Iterator

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from keymoment.connectors.webhook import RetryPolicy, WebhookDelivery, WebhookSink, parse_secret
from keymoment.flows.outputs import output
from tests.support.gateway import SLOW, Gateway
from tests.support.servers import free_port

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
FAST = RetryPolicy(max_attempts=4, base_delay=0.02, max_delay=0.1)


def _offers(n: int) -> list[dict]:
    return [
        {
            "offer_id": hashlib.sha256(str(i).encode()).hexdigest()[:32],
            "customer_id": f"c{i}",
            "channel": "sms",
            "campaign_id": "win-back",
            "rule_id": "gone-quiet",
            "attributes": {"n": i},
        }
        for i in range(n)
    ]


def _bucket(offer_id: str) -> int:
    return int(offer_id[:4], 16) % 10


def _flaky(offer_id: str, attempt: int) -> int:
    """Bucket 0: 400 always; buckets 1-2: 500 on the first two attempts; 3: 503 once; else 200."""
    bucket = _bucket(offer_id)
    if bucket == 0:
        return 400
    if bucket in (1, 2) and attempt <= 2:
        return 500
    if bucket == 3 and attempt == 1:
        return 503
    return 200


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway(SECRET, _flaky).start()
    yield gw
    gw.stop()


def test_flow_delivers_each_offer_once_retries_5xx_and_dead_letters_4xx(gateway, caplog) -> None:
    """Through a Bytewax run: every 2xx offer accepted exactly once, retries seen, 400s dead."""
    caplog.set_level(logging.DEBUG)
    offers = _offers(300)
    dead: list[dict] = []
    flow = Dataflow("webhook")
    items = op.input("in", flow, TestingSource(offers, batch_size=40))
    sink = WebhookSink(gateway.url, SECRET, max_in_flight=4, retry=FAST)
    op.output("dead", output("deliver", items, sink), TestingSink(dead))
    run_main(flow)
    rejected = {o["offer_id"] for o in offers if _bucket(o["offer_id"]) == 0}
    assert gateway.bad_signatures == 0 and not gateway.problems
    assert set(gateway.accepted) == {o["offer_id"] for o in offers} - rejected
    assert set(gateway.accepted.values()) == {1} and not gateway.repeats
    retried = {o for o, n in gateway.attempts.items() if n > 1}
    assert retried == {o["offer_id"] for o in offers if _bucket(o["offer_id"]) in (1, 2, 3)}
    assert {d["offer_id"] for d in dead} == rejected
    assert all(d["reason"] == "webhook_rejected" and d["status"] == 400 for d in dead)
    assert all(d["attempts"] == 1 and d["source"].endswith("/offers") for d in dead)
    assert SECRET not in caplog.text and SECRET.removeprefix("whsec_") not in caplog.text


def test_a_forged_signature_is_refused_by_the_gateway(gateway) -> None:
    """The independent verifier rejects a request signed with another key (the check is real)."""
    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    dead = WebhookDelivery(gateway.url, other, retry=FAST).deliver_batch(_offers(1))
    assert gateway.bad_signatures == 1 and dead[0]["status"] == 401
    assert dead[0]["reason"] == "webhook_rejected"


def test_persistent_5xx_ends_as_unavailable_after_max_attempts() -> None:
    """An offer that keeps getting 500 is tried max_attempts times, then dead-lettered."""
    gw = Gateway(SECRET, lambda offer_id, attempt: 500).start()
    try:
        dead = WebhookDelivery(gw.url, SECRET, retry=FAST).deliver_batch(_offers(2))
    finally:
        gw.stop()
    assert [d["reason"] for d in dead] == ["webhook_unavailable"] * 2
    assert all(d["status"] == 500 and d["attempts"] == 4 for d in dead)
    assert set(gw.attempts.values()) == {4} and not gw.accepted


def test_timeout_is_retried_and_the_gateway_accepts_the_offer_once() -> None:
    """A reply slower than the timeout is retried with the same Idempotency-Key: accepted once."""
    gw = Gateway(
        SECRET, lambda offer_id, attempt: SLOW if attempt == 1 else 200, slow_seconds=0.6
    ).start()
    try:
        delivery = WebhookDelivery(gw.url, SECRET, timeout=0.2, retry=FAST)
        assert delivery.deliver_batch(_offers(3)) == []
    finally:
        gw.stop()
    assert set(gw.attempts.values()) == {2} and delivery.retries == 3
    assert set(gw.accepted.values()) == {1} and set(gw.repeats.values()) == {1}


def test_refused_connections_are_retried_until_the_gateway_comes_up() -> None:
    """Offers sent while nothing listens are delivered once the gateway starts."""
    port = free_port()
    gw = Gateway(SECRET, port=port)
    timer = threading.Timer(0.3, gw.start)
    timer.start()
    try:
        retry = RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=0.4)
        delivery = WebhookDelivery(gw.url, SECRET, retry=retry)
        assert delivery.deliver_batch(_offers(5)) == []
    finally:
        timer.join()
        gw.stop()
    assert len(gw.accepted) == 5 and delivery.retries >= 5


def test_requests_in_flight_are_bounded() -> None:
    """With max_in_flight=3 the gateway never sees over 3 concurrent requests (but sees >1)."""
    gw = Gateway(SECRET, work_seconds=0.03).start()
    try:
        WebhookDelivery(gw.url, SECRET, max_in_flight=3).deliver_batch(_offers(40))
    finally:
        gw.stop()
    assert len(gw.accepted) == 40 and 2 <= gw.peak_in_flight <= 3


def test_plain_sink_hands_dead_letters_to_its_callback(gateway) -> None:
    """Used with op.output, the sink passes each permanent failure to on_dead_letter."""
    offers = _offers(60)
    dead: list[dict] = []
    flow = Dataflow("webhook-sink")
    sink = WebhookSink(gateway.url, SECRET, retry=FAST, on_dead_letter=dead.append)
    op.output("out", op.input("in", flow, TestingSource(offers)), sink)
    run_main(flow)
    rejected = {o["offer_id"] for o in offers if _bucket(o["offer_id"]) == 0}
    assert {d["offer_id"] for d in dead} == rejected


@pytest.mark.parametrize("secret", ["whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()])
def test_bad_secret_is_refused(secret: str) -> None:
    """A secret that is not base64 or is too short is refused with a one-line ValueError."""
    with pytest.raises(ValueError, match="webhook secret"):
        parse_secret(secret)


class _CrashOnce:
    """Turns lines into offers; raises once at one position: a crash between deliveries."""

    def __init__(self, position: str, flag):
        self.position, self.flag = position, flag

    def __call__(self, item: tuple[str, bytes]) -> dict:
        if item[0] == self.position and not self.flag.exists():
            self.flag.touch()
            raise RuntimeError("injected crash")
        return _offers(1000)[int(item[1])]


def test_crash_and_resume_the_gateway_accepts_every_offer_exactly_once(gateway, tmp_path) -> None:
    """After a crash mid-stream and a recovery run, each 2xx offer is accepted once (repeats ok)."""
    from datetime import timedelta

    from bytewax.recovery import RecoveryConfig, init_db_dir

    from keymoment.connectors.files import JsonlFileSource

    path, db = tmp_path / "in.jsonl", tmp_path / "db"
    path.write_text("".join(f"{i}\n" for i in range(400)))
    db.mkdir()
    init_db_dir(db, 1)

    def flow() -> Dataflow:
        f = Dataflow("webhook-crash")
        chunks = op.input("in", f, JsonlFileSource(path, batch_size=9))
        lines = op.flat_map("lines", chunks, list)  # each `Lines` item as its (position, line)
        offers = op.map("offer", lines, _CrashOnce(f"{path}:250", tmp_path / "flag"))
        output("deliver", offers, WebhookSink(gateway.url, SECRET, retry=FAST))
        return f

    with pytest.raises(Exception, match="mapper"):
        run_main(flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    before = len(gateway.accepted)
    run_main(flow(), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
    expected = {o["offer_id"] for o in _offers(400) if _bucket(o["offer_id"]) != 0}
    assert 0 < before < len(expected)
    assert set(gateway.accepted) == expected and set(gateway.accepted.values()) == {1}


def test_a_keep_alive_connection_closed_by_the_gateway_is_reopened_without_a_retry() -> None:
    """Reusing a connection the gateway dropped while idle costs no attempt and no backoff."""
    gw = Gateway(SECRET, drop_idle=True).start()
    try:
        delivery = WebhookDelivery(gw.url, SECRET, max_in_flight=1, retry=FAST)
        assert delivery.deliver_batch(_offers(6)) == []
    finally:
        gw.stop()
    assert delivery.retries == 0 and set(gw.attempts.values()) == {1} and len(gw.accepted) == 6


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 made with the openssl command line (a test prerequisite)."""
    import subprocess

    cert, key = str(tmp_path / "gw.pem"), str(tmp_path / "gw.key")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_gateway_is_verified_against_the_given_ca(tmp_path) -> None:
    """Over HTTPS the gateway's certificate must check out: trusted via ca_file, else refused."""
    cert, key = _self_signed(tmp_path)
    gw = Gateway(SECRET, tls=(cert, key)).start()
    try:
        trusted = WebhookDelivery(gw.url, SECRET, retry=FAST, ca_file=cert)
        assert trusted.deliver_batch(_offers(3)) == []
        untrusted = WebhookDelivery(gw.url, SECRET, retry=FAST)
        dead = untrusted.deliver_batch(_offers(1))
    finally:
        gw.stop()
    assert len(gw.accepted) == 3 and gw.bad_signatures == 0
    assert dead[0]["reason"] == "webhook_unavailable" and dead[0]["status"] is None


def test_a_record_without_offer_id_is_a_dead_letter_not_a_crash(gateway) -> None:
    """Something that is not an offer is never sent; it comes back as a dead letter."""
    dead = WebhookDelivery(gateway.url, SECRET, retry=FAST).deliver_batch([{"customer_id": "c"}])
    assert dead == [
        {
            "reason": "webhook_no_offer_id",
            "source": f"webhook:127.0.0.1:{gateway.port}/offers",
            "status": None,
            "attempts": 0,
            "offer_id": None,
            "customer_id": "c",
            "channel": None,
            "campaign_id": None,
            "rule_id": None,
        }
    ]
    assert not gateway.attempts
