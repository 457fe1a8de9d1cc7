"""The delivery stage inside real Bytewax runs: dead letters come back, a crash loses nothing.

The resume test holds some offers un-acknowledged by the gateway (503 until
the test says otherwise) when the flow crashes; they exist only in the
delivery step's snapshot, so after the recovery run every offer must be
accepted by the gateway exactly once, re-sent with the same Idempotency-Key.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from keymoment.connectors.delivery import RetryPolicy
from keymoment.connectors.files import JsonlFileSource
from keymoment.connectors.webhook import WebhookSink
from keymoment.flows.delivery import deliver
from tests.support.gateway import Gateway

SECRET = "whsec_" + base64.b64encode(b"f" * 24).decode()
FAST = RetryPolicy(max_attempts=50, base_delay=0.01, max_delay=0.05)


def offer(i: int) -> dict:
    oid = hashlib.sha256(f"flow{i}".encode()).hexdigest()[:32]
    return {"offer_id": oid, "customer_id": f"c{i % 37}", "channel": "sms", "rule_id": "r"}


def keyed(o: dict) -> tuple[str, dict]:
    return (f"k{int(o['offer_id'][:2], 16) % 4}", o)


def test_offers_are_delivered_and_4xx_come_back_as_dead_letters() -> None:
    """Every 2xx offer accepted once; every 400 is one dead letter out of the step."""
    rejected = {offer(i)["offer_id"] for i in range(0, 200, 7)}
    gw = Gateway(SECRET, lambda o, n: 400 if o in rejected else (500 if n == 1 else 200)).start()
    try:
        dead: list[dict] = []
        flow = Dataflow("staged")
        items = op.input("in", flow, TestingSource([offer(i) for i in range(200)], batch_size=20))
        sink = WebhookSink(gw.url, SECRET, retry=FAST)
        op.output("dead", deliver("deliver", op.map("key", items, keyed), sink), TestingSink(dead))
        run_main(flow)
        assert {d["offer_id"] for d in dead} == rejected
        assert all(d["reason"] == "webhook_rejected" and "offer" in d for d in dead)
        assert set(gw.accepted) == {offer(i)["offer_id"] for i in range(200)} - rejected
        assert set(gw.accepted.values()) == {1}
    finally:
        gw.stop()


class CrashOnce:
    """Lines to keyed offers; raises once at one position: a crash mid-stream."""

    def __init__(self, position: str, flag: Path) -> None:
        self.position, self.flag = position, flag

    def __call__(self, item: tuple[str, bytes]) -> tuple[str, dict]:
        if item[0] == self.position and not self.flag.exists():
            self.flag.touch()
            raise RuntimeError("injected crash")
        return keyed(offer(int(item[1])))


def test_after_a_crash_every_unacknowledged_offer_is_sent_again(tmp_path: Path) -> None:
    """Offers the gateway had not acknowledged at the crash are accepted once after resume."""
    held = {offer(i)["offer_id"] for i in range(0, 250, 3)}
    state = {"resumed": False}

    def script(offer_id: str, attempt: int) -> int:
        return 503 if offer_id in held and not state["resumed"] else 200

    gw = Gateway(SECRET, script).start()
    path, db = tmp_path / "in.jsonl", tmp_path / "db"
    path.write_text("".join(f"{i}\n" for i in range(400)))
    db.mkdir()
    init_db_dir(db, 1)

    def flow(sink: WebhookSink) -> Dataflow:
        f = Dataflow("delivery-crash")
        chunks = op.input("in", f, JsonlFileSource(path, batch_size=9))
        lines = op.flat_map("lines", chunks, list)  # each `Lines` item as its (position, line)
        offers = op.map("offer", lines, CrashOnce(f"{path}:250", tmp_path / "flag"))
        deliver("deliver", offers, sink)
        return f

    try:
        first = WebhookSink(gw.url, SECRET, retry=FAST)
        with pytest.raises(Exception, match="mapper"):
            run_main(flow(first), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
        first.delivery.close()  # the crashed process's threads are gone, as after kill -9
        assert not held & set(gw.accepted) and gw.attempts.keys() & held
        state["resumed"] = True
        again = WebhookSink(gw.url, SECRET, retry=FAST)
        run_main(flow(again), epoch_interval=timedelta(0), recovery_config=RecoveryConfig(db))
        assert set(gw.accepted) == {offer(i)["offer_id"] for i in range(400)}
        assert set(gw.accepted.values()) == {1}
    finally:
        gw.stop()


def test_a_stalled_gateway_stalls_neither_the_decision_log_nor_another_channel(
    tmp_path: Path, monkeypatch
) -> None:
    """The whole flow: sms answers nothing, yet every decision and every app_push offer goes out.

    Before the delivery stage, the sms step blocked the Bytewax worker at
    its first batch, so the engine never reached the end of its input.
    """
    import threading

    from keymoment.flows.dataflow import build_flow
    from tests.integration.flowkit import replay_settings, write_generated
    from tests.integration.test_delivery_stage import until

    release = threading.Event()
    stalled = Gateway(SECRET, lambda o, n: 200 if release.wait(60) else 500).start()
    healthy = Gateway(SECRET).start()
    monkeypatch.setenv("KM_STALL_SECRET", SECRET)
    data = write_generated(tmp_path, customers=300, days=200, seed=5, noise=0.0)
    lines = len(data["events"].read_bytes().splitlines())
    hook = "?secret_env=KM_STALL_SECRET"
    sinks = {"sms": f"webhook+{stalled.url}{hook}", "app_push": f"webhook+{healthy.url}{hook}"}
    settings = replay_settings(data, tmp_path / "out").model_copy(update={"sinks": sinks})
    seen = {"lines": 0, "sms": 0, "app_push": 0, "decisions": 0}

    def observe(out) -> None:
        seen["lines"] += out.lines
        seen["decisions"] += len(out.decisions)
        for offer in out.offers:
            seen[offer["channel"]] = seen.get(offer["channel"], 0) + 1

    runner = threading.Thread(target=run_main, args=(build_flow(settings, observe=observe),))
    runner.start()
    try:
        until(lambda: seen["lines"] == lines, timeout=120)
        until(lambda: len(healthy.accepted) == seen["app_push"], timeout=60)
        log = tmp_path / "out" / "decisions.jsonl"
        until(lambda: len(log.read_bytes().splitlines()) == seen["decisions"], timeout=60)
        assert seen["sms"] > 0 and seen["app_push"] > 0 and not stalled.accepted
    finally:
        release.set()
        runner.join(120)
        stalled.stop(), healthy.stop()
    assert not runner.is_alive() and len(stalled.accepted) == seen["sms"]
