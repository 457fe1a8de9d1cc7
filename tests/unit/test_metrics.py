"""Flow metrics: counted per batch, served over real HTTP, read back with the text parser."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keymoment.connectors.urls import cap_store_from_url
from keymoment.connectors.webhook import RetryPolicy, WebhookDelivery
from keymoment.connectors.wire import decode
from keymoment.flows.health import Health, Listener, parse_listen
from keymoment.flows.metrics import FlowMetrics
from keymoment.flows.shard import ShardOutput
from keymoment.flows.stamp import Accepted, Batch
from keymoment.policy.decision import Decision
from keymoment.state import (
    CapStoreUnavailable,
    Check,
    MemoryCapStore,
    Option,
    Reservation,
)
from keymoment.triggers.candidate import Candidate
from tests.support.gateway import Gateway
from tests.support.servers import free_port

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES, OUTCOMES, CHANNELS = ["r1", "r2", "r3"], ["sent", "control", "capped"], ["sms", None]


def samples(metrics: FlowMetrics, name: str, http: bool = True) -> dict[tuple, float]:
    """`name`'s samples as {sorted label items without process: value}, parsed from the text."""
    text = (
        _get(_serve(metrics).url + "/metrics")[1]
        if http
        else generate_latest(metrics.registry).decode()
    )
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                assert s.labels.pop("process") == metrics.process
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


_listeners: list[Listener] = []


def _serve(metrics: FlowMetrics, health: Health | None = None) -> Listener:
    listener = Listener(metrics.registry, health or Health(), "127.0.0.1", 0)
    _listeners.append(listener)
    return listener


@pytest.fixture(autouse=True)
def _close_listeners():
    yield
    while _listeners:
        _listeners.pop().close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _decision(rule: str, outcome: str, channel: str | None, at: datetime = T0) -> Decision:
    candidate = Candidate(rule, "dormancy", "k", "c1", at, "e1")
    return Decision(candidate, outcome, None, "k", "K-1", 7, at, channel)  # type: ignore[arg-type]


def _out(decisions: list[Decision], dead: list[dict] | None = None, offers=()) -> ShardOutput:
    return ShardOutput(decisions, list(offers), dead or [], 0, 0)


decisions = st.lists(
    st.builds(
        _decision, st.sampled_from(RULES), st.sampled_from(OUTCOMES), st.sampled_from(CHANNELS)
    ),
    max_size=40,
)


@settings(max_examples=30, deadline=None)
@given(st.lists(decisions, max_size=5))
def test_decision_counters_equal_a_brute_force_count_over_all_batches(batches) -> None:
    """Counting per batch (grouped) gives the same totals as counting each decision."""
    metrics = FlowMetrics(process=3)
    for batch in batches:
        metrics.output(_out(batch))
    flat = [d for batch in batches for d in batch]
    expected = Counter(
        (("channel", d.channel or "none"), ("outcome", d.outcome), ("rule", d.candidate.rule_id))
        for d in flat
    )
    assert samples(metrics, "keymoment_decisions_total", http=False) == expected
    by_rule = Counter((("rule", d.candidate.rule_id),) for d in flat)
    assert samples(metrics, "keymoment_candidates_total", http=False) == by_rule


def _event(i: int, kind: str) -> bytes:
    base = {"event_id": f"e{i}", "customer_id": f"c{i % 3}", "occurred_at": "2026-03-01T12:00:00Z"}
    if kind == "app":
        return orjson.dumps({**base, "type": "app", "action": "login"})
    extra = {"account_id": "a", "direction": "credit", "amount": "10.00", "kind": "payroll"}
    return orjson.dumps({**base, "type": "transaction", **extra})


def _message(source: str, kinds: list[str], lines: int) -> Batch:
    events, positions = [], [f"{source}:{i + 1}" for i in range(len(kinds))]
    for i, (kind, position) in enumerate(zip(kinds, positions, strict=True)):
        events.append(decode(_event(i, kind), position))
    own = Accepted(events, positions, [-1] * len(kinds))  # type: ignore[arg-type]  # decode gives no dead letter here
    return Batch([], [], list(range(len(kinds))), own, None, [], lines)


def test_events_are_counted_by_type_and_records_by_the_source_that_read_them() -> None:
    """Each shard's own events count by type; each source's batches count where they are read."""
    metrics = FlowMetrics()
    metrics.batch([_message("tx.jsonl", ["transaction", "app", "app"], 5), _message("k", [], 0)])
    metrics.batch([_message("app.jsonl", ["app"], 1)])
    assert samples(metrics, "keymoment_events_total") == {
        (("type", "transaction"),): 1,
        (("type", "app"),): 3,
    }
    metrics.reader("tx.jsonl")(5)
    metrics.reader("0-topic")(2)
    metrics.reader("tx.jsonl")(1)
    assert samples(metrics, "keymoment_input_records_total") == {
        (("source", "tx.jsonl"),): 6,
        (("source", "0-topic"),): 2,
    }


def test_dead_letters_by_reason_and_latency_on_the_wall_clock() -> None:
    """Dead letters count by reason; the latency histogram holds now - triggered_at."""
    metrics = FlowMetrics()
    now = T0 + timedelta(seconds=2)
    metrics.output(_out([_decision("r1", "sent", "sms", T0)], [{"reason": "bad_amount"}] * 2), now)
    assert samples(metrics, "keymoment_dead_letters_total") == {(("reason", "bad_amount"),): 2}
    assert samples(metrics, "keymoment_decision_latency_seconds_sum") == {(): 2.0}
    buckets = samples(metrics, "keymoment_decision_latency_seconds_bucket")
    assert buckets[(("le", "1.0"),)] == 0 and buckets[(("le", "2.5"),)] == 1


def test_watermark_lag_is_read_from_the_injected_clock_at_scrape_time() -> None:
    """The watermark only moves forward; its lag is the clock minus the watermark."""
    clock = [T0.timestamp() + 30]
    metrics = FlowMetrics(clock=lambda: clock[0])
    assert samples(metrics, "keymoment_watermark_lag_seconds") == {}
    metrics.watermark(T0)
    metrics.watermark(T0 - timedelta(hours=1))
    assert samples(metrics, "keymoment_watermark_lag_seconds") == {(): 30.0}
    clock[0] += 10
    assert samples(metrics, "keymoment_watermark_lag_seconds") == {(): 40.0}
    assert samples(metrics, "keymoment_watermark_seconds") == {(): T0.timestamp()}


def test_cap_store_calls_are_timed_and_failures_counted() -> None:
    """A memory store's calls are observed; a Redis store nobody listens on counts errors."""
    metrics = FlowMetrics()
    store = metrics.time_store(MemoryCapStore())
    assert isinstance(store, MemoryCapStore)  # the policy's snapshot depends on the class
    one = Reservation(
        "o1", "c1", 0, (Option("sms|0", 0, (Check("cap", "k", "rolling", 1, 1000),)),)
    )
    assert store.reserve_many([one])[0].tag == "sms|0"
    dead = metrics.time_store(cap_store_from_url(f"redis://127.0.0.1:{free_port()}/0?timeout=0.2"))
    with pytest.raises(CapStoreUnavailable):
        dead.reserve(one)
    assert samples(metrics, "keymoment_cap_store_latency_seconds_count") == {(): 2}
    assert samples(metrics, "keymoment_cap_store_errors_total") == {(): 1}


SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


def test_webhook_delivery_counters_show_as_delivered_retried_failed() -> None:
    """A real webhook delivery to a gateway that fails once, then refuses one offer for good."""
    script = {"a" * 32: [500, 200], "b" * 32: [400]}
    gateway = Gateway(SECRET, lambda offer_id, attempt: script[offer_id][attempt - 1]).start()
    try:
        delivery = WebhookDelivery(gateway.url, SECRET, retry=RetryPolicy(3, 0.01, 0.02))
        metrics = FlowMetrics()
        metrics.route({"sms": delivery, "file": object()}, default="file")
        offers = [{"offer_id": k, "channel": "sms", "customer_id": "c"} for k in script]
        metrics.output(_out([], offers=[*offers, *[{"channel": "app_push"}] * 4]))
        delivery.deliver_batch(offers)
    finally:
        gateway.stop()
    sms, file = (("sink", "sms"),), (("sink", "file"),)
    assert samples(metrics, "keymoment_offers_delivered_total") == {sms: 1, file: 4}
    assert samples(metrics, "keymoment_offers_retried_total") == {sms: 1, file: 0}
    assert samples(metrics, "keymoment_offers_failed_total") == {sms: 1, file: 0}


def test_rules_info_snapshot_parked_and_reload_failures() -> None:
    """The rules version is an info metric; snapshot size and parked candidates are gauges."""

    class Parked:  # the one attribute the metric reads from a policy
        pending = 4

    metrics = FlowMetrics()
    metrics.rules_loaded(7)
    metrics.snapshot(0.5, 1234)
    metrics.watch_policy(Parked())
    metrics.watch_policy(Parked())
    metrics.rules_reload({"result": "rejected", "to_version": 8})
    assert samples(metrics, "keymoment_rules_info") == {(("version", "7"),): 1}
    metrics.rules_reload({"result": "applied", "to_version": 9})
    assert samples(metrics, "keymoment_rules_info") == {(("version", "9"),): 1}
    assert samples(metrics, "keymoment_snapshot_size_bytes") == {(): 1234}
    assert samples(metrics, "keymoment_candidates_parked") == {(): 8}
    assert samples(metrics, "keymoment_rules_reload_failures_total") == {(): 1}


def test_healthz_readyz_and_unknown_paths() -> None:
    """/readyz names every failing check (503) and turns 200 once they pass."""
    state = {"rules": "not loaded", "sources": None}
    health = Health()
    health.add("rules", lambda: state["rules"])
    health.add("sources", lambda: state["sources"])
    health.add("cap_store", lambda: 1 / 0 if state["rules"] else None)
    url = _serve(FlowMetrics(), health).url
    assert _get(url + "/healthz") == (200, "ok\n")
    code, text = _get(url + "/readyz")
    assert code == 503
    assert text.splitlines()[1:] == [
        "rules: not loaded",
        "cap_store: ZeroDivisionError: division by zero",
    ]
    state["rules"] = None
    assert _get(url + "/readyz") == (200, "ready\n")
    assert _get(url + "/nope")[0] == 404
    request = urllib.request.Request(url + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 405


@pytest.mark.parametrize(
    ("text", "expected"),
    [("9464", ("127.0.0.1", 9464)), (":9464", ("127.0.0.1", 9464)), ("0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_listen_addresses_default_to_loopback(text, expected) -> None:
    """A bare port binds to loopback: another address must be asked for."""
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:http", "1:99999", ""])
def test_bad_listen_addresses_are_one_line_errors(text) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(text)


def test_the_process_id_of_bytewax_run_is_found_as_bytewax_finds_it() -> None:
    from keymoment.flows.dataflow import bytewax_process_id

    flow = "keymoment.flows.dataflow:get_flow"
    assert bytewax_process_id([flow], {}) == 0
    assert bytewax_process_id([flow, "-i", "3", "-a", "h:1;h:2"], {}) == 3
    assert bytewax_process_id([flow, "--process-id=2", "-w", "2"], {}) == 2
    assert bytewax_process_id([flow], {"BYTEWAX_PROCESS_ID": "1"}) == 1
    assert bytewax_process_id([flow, "-i", "4"], {"BYTEWAX_PROCESS_ID": "1"}) == 4
    pod = {"BYTEWAX_POD_NAME": "km-flow-5", "BYTEWAX_STATEFULSET_NAME": "km-flow"}
    assert bytewax_process_id([flow], pod) == 5
