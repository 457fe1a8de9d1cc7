"""URLs -> sources, sinks and customer reference data: the forms `keymoment run` accepts.

Sources (each emits `(position, payload_bytes)`):
    file:events.jsonl | file:events.jsonl.gz | events.jsonl | file:data/*.jsonl.gz
                                          (each file of a glob or each URL: one partition)
    kafka://host:port[,host:port]/topic[,topic2][?start=earliest|latest&tail=1&batch=1000
                                               &fetch_wait_ms=N]
    redis://host:port/0?stream=tx[&stream=app][&start=0|$&tail=1&batch=1000]
    generator:?customers=1000&rate=5000&seed=7[&count=N&days=240&live=1&noise=0&batch=1000]
Sinks (each takes dict records):
    stdout: | file:out.jsonl | kafka://host:port/topic[?key=offer_id|customer_id]
    redis://host:port/0?stream=offers[&maxlen=100000&dedupe=SECONDS (0: off)]
    webhook+http(s)://host:port/path?secret_env=NAME[&max_in_flight=8&max_backlog=10000
                                                     &timeout=5&max_attempts=6&ca_file=PEM]
Customers:
    file:customers.jsonl | customers.jsonl | redis://host:port/0?prefix=customer:
    generator:?customers=1000&seed=7   (the profiles of the generator source's customers)
Cap store (`--state`):
    memory: (the default) | redis://host:port/0[?timeout=0.25&prefix=km]

Every problem is a `ValueError` with one line: an unknown scheme or
parameter, a missing file, a secret variable that is not set, and (with
`check=True`, the default) a Redis or Kafka server that does not answer or
a Kafka topic that does not exist. Secrets never appear in a URL or in a
message: the webhook secret comes from the environment variable named by
`secret_env`. Messages name servers as host:port, never with a password.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from keymoment.connectors.urlparts import (
    file_path,
    flag,
    one,
    query,
    safe,
    server_url,
    split,
    where,
)
from keymoment.state import CapStore, MemoryCapStore
from keymoment.triggers.events import CustomerProfile

if TYPE_CHECKING:  # Bytewax is imported by the builders that need it: `backtest` never does
    from bytewax.inputs import Source
    from bytewax.outputs import Sink

log = logging.getLogger(__name__)


# --- sources -------------------------------------------------------------------------------


def source_from_url(url: str, check: bool = True, **opts: Any) -> Source:
    """The Bytewax source for one URL; `opts` (`batch_size`) are defaults the URL overrides."""
    scheme, rest = split(url)
    if scheme in ("", "file"):
        from keymoment.connectors.files import JsonlFileSource

        path = file_path(rest) if scheme else Path(url)
        return JsonlFileSource(_expand(path), batch_size=opts.get("batch_size", 1000))
    build = _SOURCES.get(scheme)
    if build is None:
        raise ValueError(
            f"unsupported source URL {safe(url)!r}: use file:, kafka://, redis:// or generator:"
        )
    return build(url, check, opts)


def _expand(path: Path) -> list[Path]:
    """A glob (`data/*.jsonl.gz`) names several files, one partition each, in name order."""
    if path.exists() or not any(c in str(path) for c in "*?["):
        return [path]
    matches = sorted(Path(path.anchor or ".").glob(str(path.relative_to(path.anchor or "."))))
    if not matches:
        raise ValueError(f"no input file matches {path}")
    return matches


def _kafka_source(url: str, check: bool, opts: dict) -> Source:
    from keymoment.connectors.kafka import KafkaEventSource

    brokers, topics = _kafka_target(url)
    q = query(url, {"start", "tail", "batch", "fetch_wait_ms"})
    if check:
        _check_kafka(brokers, topics)
    wait = one(q, "fetch_wait_ms", None, int)
    return KafkaEventSource(
        brokers,
        topics,
        start=one(q, "start", "earliest"),
        tail=one(q, "tail", True, flag),
        batch_size=one(q, "batch", opts.get("batch_size", 1000), int),
        config={"fetch.wait.max.ms": wait} if wait is not None else None,
    )


def _kafka_target(url: str) -> tuple[list[str], list[str]]:
    parts = urlsplit(url)
    brokers = [b for b in parts.netloc.split(",") if b]
    topics = [t for t in parts.path.strip("/").split(",") if t]
    if not brokers or not topics:
        raise ValueError(f"kafka URL must be kafka://host:port/topic, not {safe(url)!r}")
    return brokers, topics


def _check_kafka(brokers: list[str], topics: list[str], timeout: float = 5.0) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ",".join(brokers)})
    try:
        known = admin.list_topics(timeout=timeout).topics
    except KafkaException:
        raise ValueError(f"cannot reach kafka at {','.join(brokers)}") from None
    missing = [t for t in topics if t not in known]
    if missing:
        raise ValueError(f"kafka topic {missing[0]!r} does not exist at {','.join(brokers)}")


def _redis_source(url: str, check: bool, opts: dict) -> Source:
    from keymoment.connectors.redis_streams import RedisStreamSource

    q = query(url, {"stream", "start", "tail", "batch"})
    streams = q.get("stream", [])
    if not streams:
        raise ValueError(f"redis source needs ?stream=NAME: {safe(url)}")
    server = server_url(url)
    if check:
        _check_redis(server)
    return RedisStreamSource(
        server,
        streams,
        start=one(q, "start", "0"),
        batch_size=one(q, "batch", opts.get("batch_size", 1000), int),
        tail=one(q, "tail", True, flag),
    )


def _check_redis(server: str) -> None:
    import redis

    from keymoment.connectors.redis_streams import connect

    try:
        with connect(server) as client:
            client.ping()
    except redis.AuthenticationError:
        raise ValueError(f"redis at {where(server)} refused the credentials") from None
    except redis.RedisError as exc:
        raise ValueError(f"cannot reach redis at {where(server)} ({type(exc).__name__})") from None


def _generator_source(url: str, check: bool, opts: dict) -> Source:
    from keymoment.connectors.synthetic import GeneratorSource

    q = query(url, {"customers", "rate", "seed", "count", "days", "live", "noise", "batch"})
    live = one(q, "live", None, flag)
    return GeneratorSource(
        seed=one(q, "seed", 7, int),
        customers=one(q, "customers", 1000, int),
        rate=one(q, "rate", 0.0, float),
        count=one(q, "count", None, int),
        live=live,
        days=one(q, "days", 240, int),
        noise=one(q, "noise", 0.0, float),
        batch_size=one(q, "batch", opts.get("batch_size", 1000), int),
    )


_SOURCES = {
    "kafka": _kafka_source,
    "redis": _redis_source,
    "rediss": _redis_source,
    "generator": _generator_source,
}


# --- sinks ---------------------------------------------------------------------------------


def sink_from_url(url: str, check: bool = True, **opts: Any) -> Sink:
    """The Bytewax sink for one URL; write to it with `keymoment.connectors.sinks.output`."""
    if url in ("stdout:", "stdout", "-"):
        from keymoment.connectors.sinks import StdoutSink

        return StdoutSink()
    scheme, rest = split(url)
    if scheme in ("", "file"):
        from keymoment.connectors.files import JsonlFileSink

        return JsonlFileSink(
            file_path(rest) if scheme else Path(url), fsync=opts.get("fsync", False)
        )
    build = _SINKS.get(scheme)
    if build is None:
        raise ValueError(
            f"unsupported sink URL {safe(url)!r}: use stdout:, file:, kafka://, "
            "redis:// or webhook+https://"
        )
    return build(url, check, opts)


def _kafka_sink(url: str, check: bool, opts: dict) -> Sink:
    from keymoment.connectors.kafka import KafkaRecordSink

    brokers, topics = _kafka_target(url)
    if len(topics) != 1:
        raise ValueError(f"a kafka sink writes to one topic: {safe(url)}")
    q = query(url, {"key"})
    if check:
        _check_kafka(brokers, [])
    return KafkaRecordSink(brokers, topics[0], key=one(q, "key", "offer_id"))


def _redis_sink(url: str, check: bool, opts: dict) -> Sink:
    from keymoment.connectors.redis_streams import DEDUPE_TTL, RedisStreamSink

    q = query(url, {"stream", "maxlen", "dedupe"})
    streams = q.get("stream", [])
    if len(streams) != 1:
        raise ValueError(f"redis sink needs exactly one ?stream=NAME: {safe(url)}")
    server = server_url(url)
    if check:
        _check_redis(server)
    return RedisStreamSink(
        server,
        streams[0],
        maxlen=one(q, "maxlen", None, int),
        dedupe_ttl=one(q, "dedupe", DEDUPE_TTL, int) or None,
    )


_WEBHOOK_OPTIONS = {
    "secret_env",
    "max_in_flight",
    "max_backlog",
    "timeout",
    "max_attempts",
    "ca_file",
}


def _webhook_sink(url: str, check: bool, opts: dict) -> Sink:
    from keymoment.connectors.webhook import RetryPolicy, WebhookSink

    parts = urlsplit(url.split("+", 1)[1])
    params = parse_qs(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in params.items() if k in _WEBHOOK_OPTIONS}
    theirs = [(k, v) for k, vs in params.items() if k not in _WEBHOOK_OPTIONS for v in vs]
    target = urlunsplit(parts._replace(query=urlencode(theirs)))
    name = one(ours, "secret_env", None)
    if not name:
        raise ValueError("webhook URL needs ?secret_env=NAME (never the secret itself)")
    secret = os.environ.get(name)
    if not secret:
        raise ValueError(f"environment variable {name} (the webhook secret) is not set")
    retry = RetryPolicy(max_attempts=one(ours, "max_attempts", 6, int))
    return WebhookSink(
        target,
        secret,
        max_in_flight=one(ours, "max_in_flight", 8, int),
        max_backlog=one(ours, "max_backlog", 10_000, int),
        timeout=one(ours, "timeout", 5.0, float),
        retry=retry,
        ca_file=one(ours, "ca_file", None),
        **{k: v for k, v in opts.items() if k == "on_dead_letter"},
    )


_SINKS = {
    "kafka": _kafka_sink,
    "redis": _redis_sink,
    "rediss": _redis_sink,
    "webhook+http": _webhook_sink,
    "webhook+https": _webhook_sink,
}


# --- customers -----------------------------------------------------------------------------


def profiles_from_url(url: str) -> dict[str, CustomerProfile]:
    """Reference data from a JSONL file or Redis hashes; invalid records are logged and skipped."""
    from keymoment.connectors.customers import read_profiles, read_redis_profiles

    scheme, rest = split(url)
    if scheme in ("", "file"):
        profiles, problems = read_profiles(file_path(rest) if scheme else Path(url))
    elif scheme in ("redis", "rediss"):
        profiles, problems = _redis_profiles(url, read_redis_profiles)
    elif scheme == "generator":
        profiles, problems = _generator_profiles(url), []
    else:
        raise ValueError(
            f"unsupported customers URL {safe(url)!r}: use file:, redis:// or generator:"
        )
    if problems:
        log.warning("%d customer records skipped, first: %s", len(problems), problems[0])
    return profiles


def _redis_profiles(url: str, read: Callable) -> tuple[dict, list[str]]:
    import redis

    from keymoment.connectors.redis_streams import connect

    q = query(url, {"prefix"})
    prefix = one(q, "prefix", "customer:")
    server = server_url(url)
    try:
        with connect(server) as client:
            return read(client, prefix)
    except redis.RedisError as exc:
        raise ValueError(
            f"cannot read customers from redis at {where(server)} ({type(exc).__name__})"
        ) from None


def _generator_profiles(url: str) -> dict[str, CustomerProfile]:
    from keymoment.connectors.customers import parse_profile

    source = _generator_source(url, False, {})
    # a GeneratorSource, typed as the plain Source every URL builder returns
    profiles = (parse_profile(record) for record in source.profiles())  # type: ignore[attr-defined]
    return {profile.customer_id: profile for profile in profiles}


# --- the cap store ---------------------------------------------------------------------------

CAP_STORE_OPTIONS = {"timeout", "prefix", "lists", "cluster", "allow_empty"}


def cap_store_from_url(url: str | None) -> CapStore:
    """`None` or `memory:` -> `MemoryCapStore`; `redis://`/`rediss://` -> `RedisCapStore`.

    `timeout` (seconds), `prefix` (key namespace), `lists=1` (suppression
    lists are also Redis sets on this server) and `cluster=1` (the URL names one
    node of a Redis Cluster) and `allow_empty=1` (an empty store at a reconnect is
    expected, state/history.py) are ours; the rest of the URL goes to redis-py.
    Every problem is one `ValueError` line.
    """
    if url is None or url in ("memory", "memory:", "memory://"):
        return MemoryCapStore()
    scheme, _ = split(url)
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"unsupported state URL {safe(url)!r}: expected memory: or redis://host:port/0"
        )
    from keymoment.state.redis_caps import DEFAULT_TIMEOUT, RedisCapStore

    options = parse_qs(urlsplit(url).query, keep_blank_values=True)
    timeout = one(options, "timeout", DEFAULT_TIMEOUT, float)
    prefix = one(options, "prefix", "km")
    lists = one(options, "lists", False, flag)
    cluster = one(options, "cluster", False, flag)
    allow_empty = one(options, "allow_empty", False, flag)
    rest = {k: v for k, v in options.items() if k not in CAP_STORE_OPTIONS}
    plain = urlunsplit(urlsplit(url)._replace(query=urlencode(rest, doseq=True)))
    return RedisCapStore(
        plain,
        prefix=prefix,
        timeout=timeout,
        lists=lists,
        cluster=cluster,
        allow_empty=allow_empty,
    )
