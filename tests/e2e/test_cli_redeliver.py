"""`keymoment redeliver`: dead-lettered offers still before expires_at reach the gateway again.

The dead letters are made by the real delivery stage against a gateway that
answers 503; the command then runs as a user runs it, against a healthy
gateway that verifies signatures. Expired offers, input dead letters,
repeats and unreadable lines are skipped and counted by why.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from keymoment.connectors.delivery import RetryPolicy
from keymoment.connectors.webhook import WebhookDelivery
from tests.integration.test_delivery_stage import offers as stage_offers
from tests.support.gateway import Gateway

SECRET = "whsec_" + base64.b64encode(b"r" * 24).decode()


def offers(n: int, tag: str, expires_at: datetime) -> list[dict]:
    return stage_offers(n, tag, expires_at.timestamp())


def dead_letters(fresh: list[dict], stale: list[dict]) -> list[dict]:
    """Real `webhook_unavailable` dead letters: a gateway that only answers 503."""
    down = Gateway(SECRET, lambda o, n: 503).start()
    delivery = WebhookDelivery(down.url, SECRET, retry=RetryPolicy(max_attempts=1))
    try:
        return delivery.deliver_batch(fresh + stale)
    finally:
        delivery.close()
        down.stop()


def redeliver(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GW_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "keymoment", "redeliver", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_offers_before_expires_at_are_sent_again_and_the_rest_is_skipped_by_why(
    tmp_path: Path,
) -> None:
    """Fresh offers accepted once, with their ids; everything else skipped and counted."""
    now = datetime.now(UTC)
    fresh = offers(8, "fresh", now + timedelta(days=2))
    stale = offers(3, "stale", now + timedelta(seconds=2))
    dead = dead_letters(fresh, stale)
    assert len(dead) == 11 and all(d["reason"] == "webhook_unavailable" for d in dead)
    for d in dead:  # the stale ones are past expires_at when redeliver runs
        if d["offer_id"] in {o["offer_id"] for o in stale}:
            d["offer"]["expires_at"] = (now - timedelta(hours=1)).isoformat()
    path = tmp_path / "dead.jsonl"
    fresh_ids = {o["offer_id"] for o in fresh}
    again = [d for d in dead if d["offer_id"] in fresh_ids][:2]  # the delivery's order varies
    lines = [orjson.dumps(d) for d in dead + again]  # two fresh offers listed twice
    lines += [b'{"reason": "bad_amount", "source": "events.jsonl:7"}', b"not json"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    up = Gateway(SECRET).start()
    try:
        sink = f"webhook+{up.url}?secret_env=GW_SECRET"
        done = redeliver("--dead-letters", str(path), "--sink", sink)
    finally:
        up.stop()
    assert done.returncode == 0, done.stderr
    assert set(up.accepted) == {o["offer_id"] for o in fresh}
    assert set(up.accepted.values()) == {1} and up.bad_signatures == 0
    out = done.stdout
    assert "skipped 3 (past expires_at)" in out and "skipped 2 (offer listed again)" in out
    assert "skipped 1 (not an offer)" in out and "skipped 1 (unreadable line)" in out
    assert "sent 8 offers: 8 accepted" in out


def test_offers_that_fail_again_are_written_for_a_later_try(tmp_path: Path) -> None:
    """A 400 on redelivery exits 1 and writes that dead letter, whole, to --failed."""
    fresh = offers(2, "again", datetime.now(UTC) + timedelta(days=1))
    path, failed = tmp_path / "dead.jsonl", tmp_path / "failed.jsonl"
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in dead_letters(fresh, [])))
    gw = Gateway(SECRET, lambda o, n: 400).start()
    try:
        sink = f"webhook+{gw.url}?secret_env=GW_SECRET"
        done = redeliver("--dead-letters", str(path), "--sink", sink, "--failed", str(failed))
    finally:
        gw.stop()
    assert done.returncode == 1 and "failed again 2 (webhook_rejected)" in done.stdout
    again = [orjson.loads(line) for line in failed.read_bytes().splitlines()]
    by_id = sorted((d["offer"] for d in again), key=lambda o: o["offer_id"])
    assert by_id == sorted(fresh, key=lambda o: o["offer_id"])


def test_mistakes_get_one_line_and_no_traceback(tmp_path: Path) -> None:
    """A missing file or a sink that is not a webhook: one clear line, exit 2."""
    missing = redeliver("--dead-letters", str(tmp_path / "nope.jsonl"), "--sink", "stdout:")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
    path = tmp_path / "dead.jsonl"
    fresh = offers(1, "x", datetime.now(UTC) + timedelta(days=1))
    path.write_bytes(orjson.dumps({"reason": "webhook_unavailable", "offer": fresh[0]}) + b"\n")
    wrong = redeliver("--dead-letters", str(path), "--sink", f"file:{tmp_path / 'o.jsonl'}")
    assert wrong.returncode == 2 and "webhook" in wrong.stderr
    assert "Traceback" not in wrong.stderr
