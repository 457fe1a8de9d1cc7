"""Offers to an HTTP channel gateway, signed the Standard Webhooks way, retried, bounded.

Each offer is one POST of its JSON with headers `webhook-id` (= offer_id),
`webhook-timestamp` (Unix seconds, fresh on every attempt),
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
keyed with the secret (`whsec_<base64 key>`), and `Idempotency-Key`
(= offer_id), so a gateway can drop the repeats that at-least-once
delivery and retries produce.

Outcomes per offer:
- 2xx: delivered.
- 5xx, 408, 429, timeouts, refused or reset connections: transient; retried
  with exponential backoff and jitter (a numeric `Retry-After` is honoured
  up to `max_delay`), at most `max_attempts` attempts in all.
- any other status (4xx, 3xx): permanent; a dead letter
  `{"reason": "webhook_rejected", "status": 400, ...}`.
- transient failures on every attempt: a dead letter
  `{"reason": "webhook_unavailable", "status": <last status or null>, ...}`;
  the flow goes on, and the operator can re-send from the decision log.

How dead letters come out: `deliver_batch(offers) -> dead letters` is the
core. `keymoment.connectors.sinks.output` runs it as a `flat_map_batch`
step, so the dead letters are a stream the flow merges into its
dead-letter output (recoverable like any other output). Used as a plain
Bytewax sink (`op.output`), `WebhookSink` passes each dead letter to its
`on_dead_letter` callback (default: only the warning logged for every
dead letter).

HTTPS verifies the gateway's certificate and host name against the system
trust store, or against `ca_file` (a PEM bundle) for a private bank CA.

At most `max_in_flight` requests are open at once per process: a thread
pool of that size, one keep-alive `http.client` connection per thread.
Logs carry offer ids, statuses and counts: never the secret, the body,
amounts, accounts or counterparties.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

log = logging.getLogger(__name__)
TRANSIENT_STATUSES = frozenset({408, 429})
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


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits uniform(half, all) of base * 2**n."""

    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        cap = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return random.uniform(cap / 2, cap)


class WebhookDelivery:
    """Delivers batches of offers with bounded concurrency; thread-safe; returns dead letters."""

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        max_in_flight: int = 8,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        ca_file: str | None = None,
    ):
        self.endpoint = Endpoint.parse(url)
        self._key = parse_secret(secret)
        self._tls = ssl.create_default_context(cafile=ca_file)  # verifies host and chain
        self.timeout, self.retry = timeout, retry or RetryPolicy()
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="webhook")
        self._local = threading.local()
        self._lock = threading.Lock()
        self.delivered = self.retries = self.rejected = self.unavailable = 0

    def deliver_batch(self, offers: Iterable[dict]) -> list[dict]:
        """Send every offer (concurrently, bounded); return when all are settled."""
        results = list(self._pool.map(self.deliver, offers))
        return [dead for dead in results if dead is not None]

    def deliver(self, offer: dict) -> dict | None:
        """One offer, retried as needed: None when delivered, else its dead letter."""
        if not offer.get("offer_id"):  # not an offer: nothing to sign or de-duplicate by
            return self._dead(offer, "webhook_no_offer_id", None, 0)
        body, offer_id = orjson.dumps(offer), str(offer["offer_id"])
        status: int | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            status, retry_after = self._attempt(offer_id, body)
            if status is not None and 200 <= status < 300:
                self._count("delivered")
                return None
            if status is not None and not _transient(status):
                return self._dead(offer, "webhook_rejected", status, attempt)
            if attempt < self.retry.max_attempts:
                self._count("retries")
                time.sleep(self.retry.delay(attempt, retry_after))
        return self._dead(offer, "webhook_unavailable", status, self.retry.max_attempts)

    def _attempt(self, offer_id: str, body: bytes) -> tuple[int | None, float | None]:
        """One POST: (status, Retry-After seconds) or (None, None) for a network failure."""
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
        return response.status, _retry_after(response.getheader("retry-after"))

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

    def _network_failure(self, offer_id: str, what: str) -> tuple[None, None]:
        log.debug("webhook %s: %s on offer %s", self.endpoint.label, what, offer_id)
        return None, None

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

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _dead(self, offer: dict, reason: str, status: int | None, attempts: int) -> dict:
        self._count("unavailable" if reason == "webhook_unavailable" else "rejected")
        log.warning(
            "webhook %s: offer %s %s (status %s after %d attempts)",
            self.endpoint.label,
            offer.get("offer_id"),
            reason,
            status,
            attempts,
        )
        return {
            "reason": reason,
            "source": self.endpoint.label,
            "status": status,
            "attempts": attempts,
            **{k: offer.get(k) for k in _OFFER_KEYS},
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# What an idle keep-alive connection closed by the server looks like on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_OFFER_KEYS = ("offer_id", "customer_id", "channel", "campaign_id", "rule_id")


def _transient(status: int) -> bool:
    return status >= 500 or status in TRANSIENT_STATUSES


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
    """Signed webhook delivery as a Bytewax sink (`op.output`) or a flow step (`deliver_batch`)."""

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        max_in_flight: int = 8,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        on_dead_letter: Callable[[dict], None] = _log_dead_letter,
        ca_file: str | None = None,
    ):
        parse_secret(secret)  # refuse a bad secret when the flow is built, not on first send
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ValueError(f"webhook ca_file not found: {ca_file}")
        self._args = (url, secret, max_in_flight, timeout, retry, ca_file)
        self.endpoint = Endpoint.parse(url)
        self._on_dead = on_dead_letter
        self._shared: WebhookDelivery | None = None
        self._lock = threading.Lock()

    @property
    def delivery(self) -> WebhookDelivery:
        """One delivery pool per process, shared by the workers of `deliver_batch`."""
        with self._lock:
            if self._shared is None:
                self._shared = WebhookDelivery(*self._args)
            return self._shared

    def deliver_batch(self, offers: list[dict]) -> list[dict]:
        return self.delivery.deliver_batch(offers)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WebhookPartition:
        return _WebhookPartition(WebhookDelivery(*self._args), self._on_dead)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shared"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
