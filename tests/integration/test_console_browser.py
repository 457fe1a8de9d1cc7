"""The console in a real headless chromium over a known decision log from `keymoment backtest`."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.console.serve import ConsoleServer, Options, credential
from tests.support.browser import browser

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-console-token-1"


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A generated bank replayed by the backtest: its decision log and dead letters."""
    out = tmp_path_factory.mktemp("console")
    gen = Generator(seed=3, customers=300, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=120)
    (out / "customers.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    (out / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    (out / "events.jsonl").open("ab").write(b'{"type": "transaction"}\nnot json\n')
    command = [
        sys.executable,
        "-m",
        "keymoment",
        "backtest",
        "--rules",
        REPO / "examples" / "rules.yaml",
    ]
    command += ["--events", out / "events.jsonl", "--customers", out / "customers.jsonl"]
    command += ["--decisions", out / "decisions.jsonl", "--dead-letters", out / "dead.jsonl"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    lines = (out / "decisions.jsonl").read_bytes().splitlines()
    dead = Counter(
        orjson.loads(line)["reason"] for line in (out / "dead.jsonl").read_bytes().splitlines()
    )
    assert len(dead) >= 2
    return {"dir": out, "decisions": [orjson.loads(line) for line in lines], "dead": dead}


@pytest.fixture(scope="module")
def console(log: dict):
    token, made_here = credential("127.0.0.1", {"KEYMOMENT_CONSOLE_TOKEN": TOKEN})
    assert (token, made_here) == (TOKEN, False)
    options = Options(
        decisions=f"file:{log['dir'] / 'decisions.jsonl'}",
        dead_letters=str(log["dir"] / "dead.jsonl"),
        rules=load_rules(REPO / "examples" / "rules.yaml"),
        port=0,
    )
    server = ConsoleServer(options, token).start()
    yield server
    server.close()


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def test_every_path_but_healthz_needs_the_credential(console: ConsoleServer) -> None:
    """Without the token: 401 and a Basic challenge; a wrong token too; with it: 200."""
    for path in ("", "panels", "status", "static/console.js", "?token=wrong"):
        assert _status(console.url + path) == 401, path
    assert _status(console.url + "status", {"Authorization": "Bearer nope"}) == 401
    assert _status(console.url + "status", {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert _status(console.url + "healthz") == 200


def test_non_loopback_without_a_credential_is_refused() -> None:
    with pytest.raises(ValueError, match="KEYMOMENT_CONSOLE_TOKEN"):
        credential("0.0.0.0", {})
    token, made_here = credential("127.0.0.1", {})
    assert made_here and len(token) >= 20


def test_the_page_in_chromium_shows_the_logs_counts_and_a_customers_decisions(
    console: ConsoleServer, log: dict
) -> None:
    """Counts equal the log's, search shows a customer's decisions, nothing external, no error."""
    decisions = log["decisions"]
    expected = Counter(
        f"{d['rule_id']}|{d['outcome']}|{d.get('channel') or '-'}" for d in decisions
    )
    by_customer = Counter(d["customer_id"] for d in decisions)
    customer = next(c for c, n in by_customer.most_common() if n <= 50)
    requests, problems = [], []
    with browser(http_credentials={"username": "operator", "password": TOKEN}) as ctx:
        page = ctx.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(console.url)
        page.wait_for_function(
            f"document.querySelectorAll('#counts td[data-window=all]').length == {len(expected)}"
        )
        cells = page.eval_on_selector_all(
            "#counts td[data-window=all]", "els => els.map(e => [e.dataset.key, e.textContent])"
        )
        assert {k: int(v.replace(",", "")) for k, v in cells} == expected
        page.fill("#q", customer)
        page.press("#q", "Enter")
        page.wait_for_selector("#customer table.customer")
        n = by_customer[customer]
        assert f"customer {customer}: {n} candidate{'s' if n > 1 else ''}" in page.inner_text(
            "#customer"
        )
        assert page.locator("#customer tbody tr").count() == by_customer[customer]
        page.select_option("#f-outcome", "sent")
        only_sent = (
            "() => { const c = [...document.querySelectorAll('#recent tbody tr td:nth-child(5)')];"
            " return c.length > 0 && c.every(t => t.textContent === 'sent'); }"
        )
        page.wait_for_function(only_sent)  # the filter applied by the script, no reload
        outcomes = page.eval_on_selector_all(
            "#recent tbody tr td:nth-child(5)", "t => t.map(x => x.textContent)"
        )
        assert set(outcomes) == {"sent"}
        dead = page.inner_text("#dead")
        for reason, n in log["dead"].items():
            assert f"{reason}\t{n:,}" in dead
        page.wait_for_timeout(1500)  # at least one refresh by the script
        assert page.inner_text("#updated").startswith("updated")
    assert requests and all(url.startswith(console.url) for url in requests), requests
    assert problems == []


def test_security_headers_on_every_answer(console: ConsoleServer) -> None:
    """The CSP allows only the console's own origin; a 401 carries it too."""
    request = urllib.request.Request(
        console.url + "status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in csp
        and "script-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(console.url, timeout=5)
    assert info.value.headers["Content-Security-Policy"] == csp
    post = urllib.request.Request(
        console.url, data=b"x", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(post, timeout=5)
    assert info.value.code == 405
