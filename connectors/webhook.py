"""Offers to an HTTP channel gateway, signed the Standard Webhooks way, through a delivery stage.

Each offer is one POST of its JSON with headers `webhook-id` (= offer_id),
`webhook-timestamp` (Unix seconds, fresh on every attempt),
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
keyed with the secret (`whsec_<base64 key>`), and `Idempotency-Key`
(= offer_id), so a gateway can drop the repeats that at-least-once
delivery and retries produce.

Outcomes per offer (the retrying is `keymoment.connectors.delivery`'s):
- 2xx: delivered.
- 5xx, 408, 429, timeouts, refused or reset connections: transient; retried
  with exponential backoff and jitter (a numeric `Retry-After` is honoured),
  at most `max_attempts` attempts in all, never after the offer's `expires_at`.
- any other status (4xx, 3xx): permanent; a dead letter
  `{"reason": "webhook_rejected", "status": 400, ...}`.
- transient failures on every attempt: `webhook_unavailable`; past
  `expires_at`: `expired_in_delivery`; a full backlog: `channel_backlog_full`.
  Every dead letter carries the whole offer, for `keymoment redeliver`.

The flow runs each webhook sink as its own delivery stage
(`keymoment.flows.delivery`): the dataflow hands offers over and goes on;
dead letters come back into the flow as a stream. `deliver_batch` is the
blocking form (for tools and tests), and used as a plain Bytewax sink
(`op.output`), `WebhookSink` passes each dead letter to its
`on_dead_letter` callback (default: only the warning logged for every
dead letter).

HTTPS verifies the gateway's certificate and host name against the system
trust store, or against `ca_file` (a PEM bundle) for a private bank CA.

At most `max_in_flight` requests are open at once per stage: that many
threads, one keep-alive `http.client` connection per thread. Logs carry
offer ids, statuses and counts: never the secret, the body, amounts,
accounts or counterparties.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from keymoment.connectors.delivery import Attempt, DeliveryStage, Outbox, RetryPolicy, submit_all

log = logging.getLogger(__name__)
SECRET_PREFIX = "whsec_"


def parse_secret(secret: str | bytes) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (a bare base64 string is accepted too)."""
    text = secret.decode() if isinstance(secret, bytes) else secret
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValueError("webhook secret must look like whsec_<base64>") from None
    if len(key) < 16:
        raise ValueError("webhook secret key must be at least 16 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`, as Standard Webhooks defines."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Endpoint:
    """Where to POST: `http`/`https`, host, port and path (with any query of its own)."""

    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL must be http(s)://host[:port]/path, not {url!r}")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, parts.port, path)

    @property
    def label(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"webhook:{self.host}{port}{self.path.partition('?')[0]}"

    def connect(self, timeout: float, tls: ssl.SSLContext | None) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class WebhookDelivery:
    """Signed POSTs of offers through a `DeliveryStage` of its own; thread-safe.

    `attempt(offer)` is one POST (the stage's `send`); `stage` holds the
    backlog, threads and retries; `deliver_batch` is the blocking form
    (submit a batch, wait until every offer of it is settled).
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        max_in_flight: int = 8,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        ca_file: str | None = None,
        max_backlog: int = 10_000,
        clock: Callable[[], float] = time.time,
    ):
        self.endpoint = Endpoint.parse(url)
        self._key = parse_secret(secret)
        self._tls = ssl.create_default_context(cafile=ca_file)  # verifies host and chain
        self.timeout = timeout
        self._local = threading.local()
        self.stage = DeliveryStage(
            self.attempt, self.endpoint.label, "webhook", max_in_flight, max_backlog, retry, clock
        )

    @property
    def retries(self) -> int:
        return self.stage.counts["retries"]

    def deliver_batch(self, offers: Iterable[dict], check_expiry: bool = True) -> list[dict]:
        """Send every offer (concurrently, bounded); return their dead letters when all settled."""
        outbox = Outbox(check_expiry)
        submit_all(self.stage, offers, outbox)
        outbox.wait()
        return outbox.take_dead()

    def attempt(self, offer: dict) -> Attempt:
        """One signed POST of `offer`: its status and Retry-After, or status None (no answer)."""
        offer_id, body = str(offer["offer_id"]), orjson.dumps(offer)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": offer_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self._key, offer_id, timestamp, body),
            "idempotency-key": offer_id,
        }
        reused = getattr(self._local, "conn", None) is not None
        try:
            response = self._post(body, headers)
        except _STALE:
            if not reused:  # a fresh connection that fails is a real failure
                return self._network_failure(offer_id, "connection closed")
            try:  # the gateway closed an idle keep-alive connection: once more, fresh
                response = self._post(body, headers)
            except (OSError, http.client.HTTPException) as exc:
                return self._network_failure(offer_id, type(exc).__name__)
        except (OSError, http.client.HTTPException) as exc:
            return self._network_failure(offer_id, type(exc).__name__)
        if response.will_close:
            self._drop_connection()
        return Attempt(response.status, _retry_after(response.getheader("retry-after")))

    def _post(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        conn = self._connection()
        try:
            conn.request("POST", self.endpoint.path, body, headers)
            response = conn.getresponse()
            response.read()
        except BaseException:
            self._drop_connection()
            raise
        return response

    def _network_failure(self, offer_id: str, what: str) -> Attempt:
        log.debug("webhook %s: %s on offer %s", self.endpoint.label, what, offer_id)
        return Attempt(None)

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.endpoint.connect(self.timeout, self._tls)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        self.stage.close()


# What an idle keep-alive connection closed by the server looks like on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value)


class _WebhookPartition(StatelessSinkPartition[dict]):
    def __init__(self, delivery: WebhookDelivery, on_dead_letter: Callable[[dict], None]):
        self._delivery, self._on_dead = delivery, on_dead_letter

    def write_batch(self, items: list[dict]) -> None:
        for dead in self._delivery.deliver_batch(items):
            self._on_dead(dead)

    def close(self) -> None:
        self._delivery.close()


def _log_dead_letter(dead: dict) -> None:
    """Plain-sink default: nothing beyond the warning the delivery already logged."""


class WebhookSink(DynamicSink[dict]):
    """Signed webhook delivery: a delivery stage per process for the flow, or a plain sink."""

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        max_in_flight: int = 8,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        on_dead_letter: Callable[[dict], None] = _log_dead_letter,
        ca_file: str | None = None,
        max_backlog: int = 10_000,
    ):
        parse_secret(secret)  # refuse a bad secret when the flow is built, not on first send
        if max_in_flight < 1 or max_backlog < 1:
            raise ValueError("webhook max_in_flight and max_backlog must be at least 1")
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ValueError(f"webhook ca_file not found: {ca_file}")
        self._args = (url, secret, max_in_flight, timeout, retry, ca_file, max_backlog)
        self.endpoint = Endpoint.parse(url)
        self._on_dead = on_dead_letter
        self._shared: WebhookDelivery | None = None
        self._lock = threading.Lock()

    @property
    def delivery(self) -> WebhookDelivery:
        """One delivery stage per process, shared by every worker and shard of this sink."""
        with self._lock:
            if self._shared is None:
                self._shared = WebhookDelivery(*self._args)
            return self._shared

    def delivery_stage(self) -> DeliveryStage:
        """What `keymoment.flows.delivery` hands offers to: this process's stage for the sink."""
        return self.delivery.stage

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WebhookPartition:
        return _WebhookPartition(WebhookDelivery(*self._args), self._on_dead)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shared"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
