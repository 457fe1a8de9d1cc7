"""A channel gateway for tests: a real HTTP server that verifies every webhook independently.

Signatures are checked with the `svix` package (its own Standard Webhooks
implementation, not ours). A `script(offer_id, attempt) -> status` decides
each answer, so tests can fail some offers with 500 (transient) or 400
(permanent), or `SLOW` to answer 200 only after a delay longer than the
client's timeout; a 429 carries `Retry-After: <retry_after>` when that is
set. `drop_idle` closes every connection after its answer without saying
so, as an idle timeout does. Like a real gateway it honours `Idempotency-Key`: an
offer accepted once is acknowledged again but never accepted twice. A
request whose body ends early (its sender was killed mid-send) is counted
as `aborted` and not answered, as a real server would drop it.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from svix.webhooks import Webhook, WebhookVerificationError

from tests.support.servers import free_port

SLOW = -1  # script answer: accept, but only after `slow_seconds`
Script = Callable[[str, int], int]


def always_ok(offer_id: str, attempt: int) -> int:
    return 200


class Gateway:
    """Records attempts, acceptances, repeats, bad signatures and peak concurrency."""

    def __init__(
        self,
        secret: str,
        script: Script = always_ok,
        port: int | None = None,
        slow_seconds: float = 0.5,
        work_seconds: float = 0.0,
        drop_idle: bool = False,
        tls: tuple[str, str] | None = None,
        retry_after: str | None = None,
    ):
        self.secret, self.script, self.port = secret, script, port or free_port()
        self.slow_seconds, self.work_seconds = slow_seconds, work_seconds
        self.drop_idle = drop_idle  # close each connection after answering, unannounced
        self.tls = tls  # (certfile, keyfile): serve HTTPS
        self.retry_after = retry_after  # the Retry-After header of every 429
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.repeats: Counter[str] = Counter()
        self.bad_signatures = 0
        self.aborted = 0  # requests whose body ended early: the sender died mid-request
        self.problems: list[str] = []
        self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/offers"

    def start(self) -> Gateway:
        self._server = _Server(("127.0.0.1", self.port), _handler(self))
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving, after the requests already in a handler were answered and counted.

        A slow answer (SLOW) is still sleeping in its handler thread when the
        client has given up on it; without this wait a test asserting on
        `repeats` raced those threads (seen failing in CI on a loaded machine).
        """
        if self._server:
            self._server.shutdown()
            deadline = time.monotonic() + self.slow_seconds + self.work_seconds + 10
            while self.in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
            self._server.server_close()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        """Verify, consult the script, count: the status to answer (SLOW: sleep, then 200)."""
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.bad_signatures += 1
            return 401
        offer_id = orjson.loads(body)["offer_id"]
        if headers.get("idempotency-key") != offer_id or headers.get("webhook-id") != offer_id:
            self.problems.append(f"ids differ for {offer_id}")
        with self._lock:
            self.attempts[offer_id] += 1
            attempt = self.attempts[offer_id]
        status = self.script(offer_id, attempt)
        if status == SLOW:
            time.sleep(self.slow_seconds)
            status = 200
        if 200 <= status < 300:
            with self._lock:
                (self.repeats if self.accepted[offer_id] else self.accepted)[offer_id] += 1
        return status

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed with its keep-alive connection open is a reset, not a failure to
        print (the kill tests do it on purpose; the request it cut short is `aborted`)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            gateway.enter()
            try:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the client was killed mid-request: nothing to answer
                    with gateway._lock:
                        gateway.aborted += 1
                    self.close_connection = True
                    return
                time.sleep(gateway.work_seconds)
                status = gateway.handle(body, {k.lower(): v for k, v in self.headers.items()})
            finally:
                gateway.leave()
            self.send_response(status)
            if status == 429 and gateway.retry_after is not None:
                self.send_header("retry-after", gateway.retry_after)
            self.send_header("content-length", "0")
            self.end_headers()
            if gateway.drop_idle:  # like an idle timeout: the client learns on its next send
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            return

    return Handler
