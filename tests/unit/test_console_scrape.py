"""The console's engine panel: a real metrics listener scraped, parsed, paced; CLI mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

from keymoment.console import render
from keymoment.console.scrape import Process, base_url, scrape
from keymoment.flows.health import Health, Listener
from keymoment.flows.metrics import FlowMetrics
from tests.support.servers import free_port


def test_a_scrape_reads_pace_lag_parked_version_and_readiness() -> None:
    """Two scrapes 2 s apart (an injected clock): the counters' change per second is the pace."""
    metrics, health = FlowMetrics(process=1, clock=lambda: 1_000_030.0), Health()
    problem = ["cap store: unreachable"]
    health.add("cap_store", lambda: problem[0] if problem else None)
    metrics.rules_loaded(7)
    listener = Listener(metrics.registry, health, "127.0.0.1", 0)
    try:
        proc, now = Process(base_url(f"127.0.0.1:{listener.port}/metrics")), [100.0]
        scrape(proc, clock=lambda: now[0])
        assert proc.up and not proc.ready and proc.reasons == ["cap_store: cap store: unreachable"]
        metrics.batch([])
        metrics.reader("tx.jsonl")(3000)
        metrics.reader("app.jsonl")(2000)
        metrics.watermark(datetime.fromtimestamp(1_000_000, UTC))
        problem.clear()
        now[0] += 2
        scrape(proc, clock=lambda: now[0])
    finally:
        listener.close()
    assert proc.ready and proc.processes == ["1"] and proc.version == "7"
    assert proc.rates["records"] == 2500 and proc.values["lag"] == 30.0
    html = render.engine([proc])
    assert "2,500/s" in html and "30.0 s" in html and "ready" in html


def test_an_endpoint_that_does_not_answer_is_down_with_the_reason() -> None:
    proc = Process(f"http://127.0.0.1:{free_port()}")
    scrape(proc, timeout=0.5)
    assert not proc.up and proc.reasons[0].startswith("unreachable")
    assert "down" in render.engine([proc])


def _console(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "keymoment", "console", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or {k: v for k, v in os.environ.items() if k != "KEYMOMENT_CONSOLE_TOKEN"},
    )


def test_console_mistakes_are_one_line() -> None:
    """Non-loopback without the credential, a bad address, an unknown URL: one line, exit 2."""
    cases = {
        ("--decisions", "d.jsonl", "--listen", "0.0.0.0:8080"): "without a credential",
        ("--decisions", "d.jsonl", "--listen", "host:"): "HOST:PORT",
        ("--decisions", "ftp://x/y"): "unsupported source URL",
        ("--decisions", "d.jsonl", "--window", "soon"): "",
    }
    for args, said in cases.items():
        result = _console(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("keymoment console: ") and said in lines[0]
