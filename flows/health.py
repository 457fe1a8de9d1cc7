"""One HTTP listener per process: `/metrics` (Prometheus), `/healthz` and `/readyz`.

A small WSGI app on the standard library's server, in a daemon thread, so it
needs nothing beyond `prometheus-client` (whose own `start_http_server` has
no place for health checks). Readiness is a list of named checks, each
returning None when fine or a one-line reason; `/readyz` answers 503 with
every failing reason, so an orchestrator's probe and an operator's `curl`
both see why. Binds to loopback unless the operator names another address.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], "str | None"]
LOOPBACK = "127.0.0.1"


class Health:
    """Named readiness checks; a check that raises counts as failing with its message."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def problems(self) -> list[str]:
        out = []
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as exc:  # a probe that fails is a reason, never a crash
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                out.append(f"{name}: {reason}")
        return out


def parse_listen(text: str, default_host: str = LOOPBACK) -> tuple[str, int]:
    """`9464`, `:9464` or `host:9464` -> (host, port); loopback when no host is given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port 1-65535, not {text!r}")
    return host, int(port)


def app(registry: CollectorRegistry, health: Health) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: three paths, GET only."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"GET only\n")
        if path == "/metrics":
            body = generate_latest(registry)
            return _reply(start_response, "200 OK", body, CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return _reply(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            problems = health.problems()
            if problems:
                text = "not ready\n" + "".join(f"{p}\n" for p in problems)
                return _reply(start_response, "503 Service Unavailable", text.encode())
            return _reply(start_response, "200 OK", b"ready\n")
        return _reply(start_response, "404 Not Found", b"/metrics, /healthz or /readyz\n")

    return wsgi


def _reply(
    start_response: Callable[..., Any], status: str, body: bytes, kind: str = "text/plain"
) -> list[bytes]:
    headers = [("Content-Type", kind), ("Content-Length", str(len(body)))]
    start_response(status, headers + [("Cache-Control", "no-store")])
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return  # a scrape every few seconds is not news


class Listener:
    """The running listener: `port` is the bound one (0 asks the system for a free port)."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        self.server = make_server(
            host, port, app(registry, health), server_class=_Server, handler_class=_QuietHandler
        )
        self.host, self.port = host, self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="keymoment-metrics", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
