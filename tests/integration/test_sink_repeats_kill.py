"""kill -9 with recovery into Kafka, Redis Stream and webhook sinks: what each repeats, measured.

A real `python -m bytewax.run` replays generated events on the event clock
with snapshots every second and is SIGKILLed `KM_KILLS` times (default 2,
to keep CI short; the figures in docs/connectors.md are from
`KM_KILLS=10 python -m pytest -s tests/integration/test_sink_repeats_kill.py`).
`app_push` offers go to a Kafka topic (keyed by offer_id), `sms` offers to
a plain Redis Stream (`dedupe=0`), the other channels to a webhook gateway
in this process that answers 503 to the first four attempts of every offer
(so each waits about 1.5 s of backoff: at each kill many offers are handed
to the delivery stage but not acknowledged, and live only in its
snapshot), and the decision log to a Redis Stream with the default dedupe.
Each kill falls 1.5-3 s after the restarted flow has written past where
the killed one had got, so past at least one committed epoch: kills
before any commit make every restart start over from the same point, and
then even a delivery step that snapshots nothing passes (checked: it does
with kills 0.3-1.2 s after the first output, and fails here).
Every sink must hold every offer_id of an uninterrupted run and nothing
else; the deduping stream must hold each exactly once, the gateway must
have accepted each offer once (so every un-acknowledged offer was sent
again after the resume), and every Kafka message's key must be its
offer_id (what a consumer dedupes by). The repeats of the at-least-once
sinks are printed, not asserted: they depend on where the kills fall.
A sink (or the gateway) holding an offer_id the uninterrupted run did not
send there, or missing one, fails with each such id's records on every
sink, which run wrote them (by the sinks' own write times) and the
uninterrupted run's decisions for that customer (`explain`); a change of
keymoment's source while the test ran (a rebase of the checkout) fails
on its own. On a fast machine the default input ends before ten kills:
`KM_KILL_CUSTOMERS` sets its size (20,000 for ten kills on an idle
two-core machine; whole-shard snapshots every second get far slower
beyond that, see docs/connectors.md).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import redis

import keymoment
from tests.integration.flowkit import bytewax_run, replay_settings, start, write_generated
from tests.integration.test_sinks_kafka import read_messages
from tests.integration.test_sources_kafka import create_topic
from tests.support.gateway import Gateway

KILLS = int(os.environ.get("KM_KILLS", "2"))
# each run must get past the last one: a fast machine needs more input (`KM_KILL_CUSTOMERS`)
CUSTOMERS = int(os.environ.get("KM_KILL_CUSTOMERS", 4000 + 500 * max(KILLS - 2, 0)))
SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


MEASURED = ("decisions", "app_push", "sms")


Written = list[tuple[int, dict]]  # (wall ms of the write, record) per message, in order
SHOWN = ("rule_id", "customer_id", "trigger", "event_id", "triggered_at", "outcome", "reason")
SHOWN += ("channel", "variant", "offer_id")


def stream_records(url: str, stream: str) -> Written:
    """A Redis Stream's records with the time of their XADD (the entry id's milliseconds)."""
    entries = redis.Redis.from_url(url).xrange(stream)
    return [(int(eid.split(b"-")[0]), orjson.loads(fields[b"data"])) for eid, fields in entries]


def ids(written: Written) -> list[str]:
    return [record["offer_id"] for _, record in written]


def shown(record: dict) -> dict:
    """The fields that tell decisions apart (no attributes: no amounts in a test log)."""
    return {k: record[k] for k in SHOWN if k in record}


def writer(at_ms: int, runs: list[tuple[int, int]]) -> str:
    """Which run was alive when a sink stamped a write: `killed run i`, or `final run`."""
    for i, (began, ended) in enumerate(runs):
        if began <= at_ms <= ended:
            return "final run" if i == len(runs) - 1 else f"killed run {i + 1}"
    return "no run"


def explain(
    sinks: dict[str, Written], expected: dict[str, set[str]], clean: Path, runs: list
) -> str:
    """Each offer_id a sink holds that the uninterrupted run did not put there, or misses.

    For each: every record of it on every sink with the run that wrote it, and the
    uninterrupted run's decisions for its customer (so a different decision shows).
    """
    decided = [orjson.loads(line) for line in clean.read_bytes().splitlines()]
    by_customer: dict[str, list[dict]] = {}
    for d in decided:
        by_customer.setdefault(d["customer_id"], []).append(d)
    lines = []
    for name, written in sinks.items():
        got, want = set(ids(written)), expected.get(name, set())
        for kind, diff in (("extra", got - want), ("missing", want - got)):
            for offer_id in sorted(diff):
                lines.append(f"{name}: {kind} {offer_id}")
                customer = None
                for where, held in sinks.items():
                    for at, record in held:
                        if record["offer_id"] == offer_id:
                            customer = record.get("customer_id", customer)
                            lines.append(f"  on {where} by {writer(at, runs)}: {shown(record)}")
                for d in decided:
                    if d["offer_id"] == offer_id:
                        customer = d["customer_id"]
                lines += [f"  clean: {shown(d)}" for d in by_customer.get(customer or "", [])]
    return "\n".join(lines)


def source_digest() -> str:
    """The source of the keymoment every run imports: the installed one, which for an
    editable install is a checkout other work may change (not this file's checkout)."""
    digest = hashlib.sha256()
    for path in sorted(Path(keymoment.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def clean_ids(path: Path) -> dict[str, set[str]]:
    """offer_ids of the uninterrupted run: all decisions, and sent offers by channel."""
    decisions = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    out: dict[str, set[str]] = {"decisions": {d["offer_id"] for d in decisions}}
    for d in decisions:
        if d["outcome"] == "sent":
            out.setdefault(d["channel"], set()).add(d["offer_id"])
    return out


def wait_for_growth(proc: subprocess.Popen, path: Path, size: int, timeout: float = 120) -> None:
    """Until the restarted flow wrote past where the killed one had got (it truncates first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the flow ended before it could be killed: use more input"
        if path.exists() and path.stat().st_size > size:
            return
        time.sleep(0.05)
    raise AssertionError("no new output within the timeout")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def kill_loop(settings, recovery: Path, watch: Path, kills: int) -> list[tuple[int, int]]:
    """The killed runs and the final one; each run's (start, end) in wall ms, for `writer`."""
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    rng = random.Random(17)
    runs = []
    for _ in range(kills):
        before = watch.stat().st_size if watch.exists() else 0
        started = wall_ms()
        proc = start(settings, *args)
        wait_for_growth(proc, watch, before)
        time.sleep(rng.uniform(1.5, 3.0))  # past at least one committed epoch
        assert proc.poll() is None, "the flow finished before the kill: use more input"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        runs.append((started, wall_ms()))
    started = wall_ms()
    final = start(settings, *args)
    _, err = final.communicate(timeout=2400)
    runs.append((started, wall_ms()))
    assert final.returncode == 0, err[-2000:]
    return runs


def test_kafka_redis_and_webhook_sinks_after_kill_9(
    tmp_path: Path, kafka_broker, redis_server, monkeypatch
) -> None:
    """Every offer on every sink after the kills; the dedupe and the gateway hold each once."""
    code = source_digest()
    data = write_generated(tmp_path, customers=CUSTOMERS, days=240, seed=31, noise=0.005)
    clean = tmp_path / "clean"
    bytewax_run(replay_settings(data, clean, shards=4, batch_size=100), timeout=900)
    expected = clean_ids(clean / "decisions.jsonl")
    topic, tag = create_topic(kafka_broker.bootstrap), uuid.uuid4().hex[:8]
    sms, decisions = f"sms-{tag}", f"decisions-{tag}"
    crashed = tmp_path / "crashed"
    settings = replay_settings(data, crashed, shards=4, batch_size=100, recovery=True)
    monkeypatch.setenv("KM_KILL_SECRET", SECRET)
    accepted: Written = []  # the gateway's 2xx answers, for `explain`

    def answer(offer_id: str, attempt: int) -> int:
        if attempt <= 4:
            return 503
        accepted.append((wall_ms(), {"offer_id": offer_id}))
        return 200

    gateway = Gateway(SECRET, answer).start()
    sinks = {
        "app_push": f"kafka://{kafka_broker.bootstrap}/{topic}",
        "sms": f"{redis_server.url}?stream={sms}&dedupe=0",
        "*": f"webhook+{gateway.url}?secret_env=KM_KILL_SECRET",
    }
    decisions_url = f"{redis_server.url}?stream={decisions}"
    settings = settings.model_copy(update={"sinks": sinks, "decisions": decisions_url})
    (tmp_path / "recovery").mkdir()
    try:
        runs = kill_loop(settings, tmp_path / "recovery", crashed / "dead.jsonl", KILLS)
    finally:
        gateway.stop()
    # a checkout rebased or edited mid-run would have its runs decide with different code
    assert source_digest() == code, "keymoment's source changed while the test ran"
    on_kafka = read_messages(kafka_broker.bootstrap, topic)
    keys = [k.decode() for k, _, _ in on_kafka]
    written = {
        "decisions": stream_records(redis_server.url, decisions),
        "app_push": [(at, orjson.loads(v)) for _, v, at in on_kafka],
        "sms": stream_records(redis_server.url, sms),
        "webhook": accepted,
    }
    others = set().union(*(v for k, v in expected.items() if k not in MEASURED))
    differs = explain(written, {**expected, "webhook": others}, clean / "decisions.jsonl", runs)
    assert not differs, f"offer_ids the uninterrupted run did not write there:\n{differs}"
    assert keys == ids(written["app_push"])
    on_sms, logged = ids(written["sms"]), ids(written["decisions"])
    assert len(expected["app_push"]) > 500 and len(expected["sms"]) > 50
    assert sorted(logged) == sorted(expected["decisions"])  # dedupe: each exactly once
    assert len(others) > 100 and set(gateway.accepted) == others
    assert set(gateway.accepted.values()) == {1} and gateway.bad_signatures == 0
    report = {
        "kills": KILLS,
        "kafka": (len(keys), len(keys) - len(set(keys))),
        "redis plain": (len(on_sms), len(on_sms) - len(set(on_sms))),
        "redis dedupe": (len(logged), len(logged) - len(set(logged))),
        "webhook (accepted, repeats refused by Idempotency-Key)": (
            len(gateway.accepted),
            sum(gateway.repeats.values()),
        ),
        "webhook requests cut short by a kill": gateway.aborted,
        "most repeats of one offer": max(Counter(keys + on_sms).values()) - 1,
    }
    print(f"\nsink repeats after kill -9 (messages, repeats): {report}")
