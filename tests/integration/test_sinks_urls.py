"""URL forms for sinks: the right connector, secrets only from the environment, clear errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from keymoment.connectors.files import JsonlFileSink
from keymoment.connectors.kafka import KafkaRecordSink
from keymoment.connectors.redis_streams import RedisStreamSink
from keymoment.connectors.sinks import StdoutSink
from keymoment.connectors.urls import sink_from_url
from keymoment.connectors.webhook import WebhookSink
from tests.integration.test_sources_kafka import create_topic

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def test_stdout_file_kafka_and_redis_forms(tmp_path: Path, kafka_broker, redis_server) -> None:
    """Each sink URL form builds its connector with the URL's options."""
    assert isinstance(sink_from_url("stdout:"), StdoutSink)
    sink = sink_from_url(f"file:{tmp_path / 'o.jsonl'}")
    assert isinstance(sink, JsonlFileSink) and sink.path == tmp_path / "o.jsonl"
    topic = create_topic(kafka_broker.bootstrap)
    kafka = sink_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}?key=offer_id")
    assert isinstance(kafka, KafkaRecordSink) and kafka.key == "offer_id"
    stream = sink_from_url(f"{redis_server.url}?stream=offers&maxlen=500&dedupe=86400")
    assert isinstance(stream, RedisStreamSink)
    assert (stream.stream, stream.maxlen, stream.url) == ("offers", 500, redis_server.url)
    assert stream.dedupe_ttl == 86400


def test_kafka_keys_by_offer_id_and_redis_dedupes_unless_told_otherwise(
    kafka_broker, redis_server
) -> None:
    """Defaults: Kafka key offer_id, Redis Stream dedupe 7 days; `dedupe=0` turns it off."""
    topic = create_topic(kafka_broker.bootstrap)
    kafka = sink_from_url(f"kafka://{kafka_broker.bootstrap}/{topic}")
    assert isinstance(kafka, KafkaRecordSink) and kafka.key == "offer_id"
    stream = sink_from_url(f"{redis_server.url}?stream=offers")
    assert isinstance(stream, RedisStreamSink) and stream.dedupe_ttl == 7 * 24 * 3600
    plain = sink_from_url(f"{redis_server.url}?stream=offers&dedupe=0")
    assert isinstance(plain, RedisStreamSink) and plain.dedupe_ttl is None


def test_webhook_secret_comes_from_the_environment(monkeypatch) -> None:
    """`secret_env` names the variable; the gateway's own query parameters stay on its URL."""
    monkeypatch.setenv("KM_TEST_SECRET", SECRET)
    sink = sink_from_url(
        "webhook+https://gw.example:8443/hook?secret_env=KM_TEST_SECRET"
        "&max_in_flight=3&tenant=bank1"
    )
    assert isinstance(sink, WebhookSink)
    assert sink.endpoint.scheme == "https" and sink.endpoint.port == 8443
    assert sink.endpoint.path == "/hook?tenant=bank1"
    assert sink.delivery.endpoint == sink.endpoint


def test_webhook_backlog_and_in_flight_must_be_positive(monkeypatch) -> None:
    """`max_backlog=0` or `max_in_flight=0` is refused when the URL is read, not at first send."""
    monkeypatch.setenv("KM_TEST_SECRET", SECRET)
    for option in ("max_backlog=0", "max_in_flight=0"):
        with pytest.raises(ValueError, match="at least 1"):
            sink_from_url(f"webhook+http://h/p?secret_env=KM_TEST_SECRET&{option}")
    sink = sink_from_url("webhook+http://h/p?secret_env=KM_TEST_SECRET&max_backlog=50")
    assert isinstance(sink, WebhookSink) and sink.delivery.stage.max_backlog == 50


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("webhook+http://h/p", "needs \\?secret_env=NAME"),
        ("webhook+http://h/p?secret_env=KM_UNSET_VARIABLE", "KM_UNSET_VARIABLE .* is not set"),
        ("kafka://127.0.0.1:9/a,b", "one topic"),
        ("redis://127.0.0.1:9/0", "exactly one \\?stream=NAME"),
        ("mqtt://broker/x", "unsupported sink URL"),
    ],
)
def test_bad_sink_urls_are_one_line_errors(url: str, message: str) -> None:
    """Each malformed sink URL is refused with a ValueError naming the problem."""
    with pytest.raises(ValueError, match=message) as info:
        sink_from_url(url)
    assert "\n" not in str(info.value)
