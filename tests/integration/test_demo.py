"""`keymoment demo` on a fresh install: no server, packaged rules, a live view and a summary."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import orjson
import pytest

from keymoment.console.follow import wait_until
from tests.support.servers import free_port


def demo(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "keymoment", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_demo_runs_for_its_duration_and_prints_a_summary() -> None:
    """Plain status lines each second when piped, then a summary with offers by rule and channel."""
    proc = demo("--duration", "3", "--rate", "3000", "--customers", "800")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status = [line for line in out.splitlines() if re.match(r"\s*\d+\.\ds\s+events", line)]
    assert len(status) >= 2
    assert "\x1b[" not in out, "terminal escapes written to a pipe"
    summary = out[out.index("summary:") :]
    events = int(re.search(r"summary: ([\d,]+) events", summary).group(1).replace(",", ""))
    assert events > 3000
    assert re.search(r"honeymoon\s+[1-9]", summary) and "app_push" in summary
    assert "dead letters:" in summary
    assert "so each campaign's uplift is +10pp" in summary  # seeded conversions, then report
    assert re.search(r"payroll-package\s+[\d,]+\s+[\d.]+%", summary)


def test_demo_ends_on_ctrl_c_with_a_summary() -> None:
    """SIGINT ends the run early and still prints the summary, exit code 0."""
    proc = demo("--duration", "120", "--rate", "2000", "--customers", "500")
    assert proc.stdout is not None
    seen = [proc.stdout.readline() for _ in range(3)]  # console, start line, first status
    assert re.match(r"\s*\d+\.\ds\s+events", seen[2]), seen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "summary:" in out and "Traceback" not in err


def test_demo_prints_its_console_and_the_console_follows_the_flow() -> None:
    """The first line is the console's login URL; its /status counts the flow's decisions."""
    port = free_port()
    proc = demo("--duration", "60", "--rate", "2000", "--customers", "4000", "--console", str(port))
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.match(
            rf"keymoment demo: live console at (http://127.0.0.1:{port}/)\?token=(\S+)", first
        )
        assert match, first
        url, token = match.groups()
        request = urllib.request.Request(
            url + "status", headers={"Authorization": f"Bearer {token}"}
        )

        def decisions() -> int:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return orjson.loads(resp.read())["decisions"]

        assert wait_until(lambda: decisions() > 0, 60)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "status", timeout=5)
        assert refused.value.code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
