"""`keymoment run --metrics`: a real run scraped over HTTP, counters against its decision log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keymoment.connectors.generator import Generator
from keymoment.console.follow import wait_until
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> str:
    """Stderr lines until one holds `text` (the run says when its input ended)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"no {text!r} from keymoment run: {''.join(seen)}")


def run_command(data: Path, decisions: Path) -> list[str]:
    """`keymoment run` on the event clock over `data`'s generated events and customers."""
    rules = str(REPO / "examples/rules.yaml")
    source, customers = f"file:{data / 'events.jsonl'}", str(data / "customers.jsonl")
    return [sys.executable, "-m", "keymoment", "run", "--rules", rules, "--source", source] + [
        "--customers",
        customers,
        "--clock",
        "event",
        "--decisions",
        f"file:{decisions}",
    ]


@pytest.fixture(scope="module")
def stayed_up(tmp_path_factory: pytest.TempPathFactory):
    """An event-clock run over a generated bank that stays up after its input ended."""
    out = tmp_path_factory.mktemp("run-metrics")
    gen = Generator(seed=5, customers=400, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=150)
    (out / "customers.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    lines = [line + b"\n" for line in gen.iter_bytes()] + [b"not json\n", b'{"type": "app"}\n']
    (out / "events.jsonl").write_bytes(b"".join(lines))
    port = free_port()
    command = run_command(out, out / "decisions.jsonl")
    command += ["--dead-letters", f"file:{out / 'dead.jsonl'}", "--metrics", str(port), "--stay-up"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        said = _wait_for(proc, "input ended")
        assert f"metrics at http://127.0.0.1:{port}/metrics" in said
        yield {"url": f"http://127.0.0.1:{port}", "dir": out, "lines": len(lines), "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _ready(url: str) -> bool:
    try:
        return _get(url + "/readyz")[0] == 200
    except OSError:
        return False


def _samples(url: str) -> dict[str, list]:
    status, text = _get(url + "/metrics")
    assert status == 200
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_decision_counters_equal_the_decision_logs_counts(stayed_up) -> None:
    """Per rule, outcome and channel, and candidates per rule, as the log has them."""
    log = [
        orjson.loads(x) for x in (stayed_up["dir"] / "decisions.jsonl").read_bytes().splitlines()
    ]
    assert len(log) > 100
    samples = _samples(stayed_up["url"])
    got = Counter()
    for s in samples["keymoment_decisions_total"]:
        assert s.labels["process"] == "0"
        got[(s.labels["rule"], s.labels["outcome"], s.labels["channel"])] += int(s.value)
    assert got == Counter((d["rule_id"], d["outcome"], d.get("channel") or "none") for d in log)
    candidates = {s.labels["rule"]: int(s.value) for s in samples["keymoment_candidates_total"]}
    assert candidates == Counter(d["rule_id"] for d in log)


def test_records_events_and_dead_letters_add_up(stayed_up) -> None:
    """Every input line is read; dead letters by reason equal the dead-letter file's."""
    samples = _samples(stayed_up["url"])
    (records,) = samples["keymoment_input_records_total"]
    assert records.value == stayed_up["lines"]
    assert records.labels["source"] == str(stayed_up["dir"] / "events.jsonl")
    dead_file = (stayed_up["dir"] / "dead.jsonl").read_bytes().splitlines()
    dead = {s.labels["reason"]: int(s.value) for s in samples["keymoment_dead_letters_total"]}
    assert dead == Counter(orjson.loads(x)["reason"] for x in dead_file)
    events = sum(s.value for s in samples["keymoment_events_total"])
    assert events + sum(v for r, v in dead.items() if r != "duplicate") == stayed_up["lines"]
    assert {s.labels["type"] for s in samples["keymoment_events_total"]} == {"transaction", "app"}
    info = samples["keymoment_rules_info"][0].labels
    assert info["version"] == "7" and samples["keymoment_watermark_lag_seconds"][0].value > 0
    assert samples["keymoment_cap_store_latency_seconds_count"][0].value > 0
    assert [s.value for s in samples["keymoment_rules_switches_late_total"]] == [0]


def test_health_and_readiness_of_the_run(stayed_up) -> None:
    assert _get(stayed_up["url"] + "/healthz") == (200, "ok\n")
    assert _get(stayed_up["url"] + "/readyz") == (200, "ready\n")


def test_a_busy_metrics_port_is_one_line(tmp_path) -> None:
    """A port already taken: one line naming it, no traceback, exit 2."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "events.jsonl").write_text("")
        (tmp_path / "customers.jsonl").write_text("")
        command = run_command(tmp_path, tmp_path / "d.jsonl") + ["--metrics", f"127.0.0.1:{port}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"keymoment run: --metrics: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_each_process_of_a_cluster_serves_its_own_endpoint(stayed_up, tmp_path) -> None:
    """Two `run` processes: ports P and P+1, labels process 0 and 1, sums equal the log."""
    out, port = stayed_up["dir"], free_port()
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    command = run_command(out, tmp_path / "decisions.jsonl")
    command += ["--metrics", str(port), "--stay-up", "--addresses", addresses, "--process-id"]
    procs = [
        subprocess.Popen([*command, str(i)], stderr=subprocess.PIPE, text=True) for i in (0, 1)
    ]
    try:
        for proc in procs:
            _wait_for(proc, "input ended")
        got: Counter = Counter()
        per_process: Counter = Counter()
        for i in (0, 1):
            for s in _samples(f"http://127.0.0.1:{port + i}")["keymoment_decisions_total"]:
                assert s.labels["process"] == str(i)
                got[(s.labels["rule"], s.labels["outcome"])] += int(s.value)
                per_process[i] += int(s.value)
        assert per_process[0] > 0 and per_process[1] > 0  # each decides its own shards
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
    log = [orjson.loads(x) for x in (tmp_path / "decisions.jsonl").read_bytes().splitlines()]
    assert got == Counter((d["rule_id"], d["outcome"]) for d in log) and len(log) > 100


def test_a_live_reload_moves_the_rules_version_and_a_refused_one_counts(tmp_path) -> None:
    """On the wall clock: an invalid rewrite counts a reload failure, a valid one version 8."""
    import shutil

    example = REPO / "examples" / "rules.yaml"
    shutil.copytree(example.parent / "lists", tmp_path / "lists")
    rules = tmp_path / "rules.yaml"
    shutil.copy(example, rules)
    port = free_port()
    generator = "generator:?customers=500&rate=500&seed=7"
    command = [
        sys.executable,
        "-m",
        "keymoment",
        "run",
        "--rules",
        str(rules),
        "--source",
        generator,
    ]
    command += ["--metrics", str(port), "--reload-lead", "1"]
    proc = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def value(name: str, label: str | None = None) -> str | float | None:
        assert proc.poll() is None, f"keymoment run ended: {proc.stderr.read()}"  # type: ignore[union-attr]
        try:
            found = _samples(url).get(name, [])
        except OSError:  # a loaded machine can reset a connection: the next poll asks again
            return None
        return (found[0].labels[label] if label else found[0].value) if found else None

    try:
        _wait_for(proc, "metrics at")
        assert wait_until(lambda: value("keymoment_rules_info", "version") == "7", 30)
        assert wait_until(lambda: _ready(url), 60)  # the flow runs: its rules are loaded
        text = example.read_text()
        (tmp_path / "bad.yaml").write_text(
            text.replace("version: 7", "version: 8").replace(
                "dedupe_window: 24h", "dedupe_window: 24x"
            )
        )
        (tmp_path / "bad.yaml").replace(rules)
        assert wait_until(lambda: value("keymoment_rules_reload_failures_total") == 1, 60)
        (tmp_path / "good.yaml").write_text(text.replace("version: 7", "version: 8"))
        (tmp_path / "good.yaml").replace(rules)
        assert wait_until(lambda: value("keymoment_rules_info", "version") == "8", 60)
        assert value("keymoment_rules_reload_failures_total") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_bytewax_run_serves_metrics_from_the_settings(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`python -m bytewax.run ...:get_flow` as two processes (`-i 0/1 -a ...`), with
    `"metrics"` in KEYMOMENT_FLOW: each listens on PORT + its id, on loopback. The flow
    runs on the wall clock over a Redis stream, so it is scraped while it runs: every
    record written is counted once over the two processes, and the decisions counted
    equal the decision log's lines."""
    import redis

    from keymoment.flows.settings import FlowSettings
    from tests.integration.flowkit import start

    stream, port = f"tx-{free_port()}", free_port()
    gen = Generator(seed=8, customers=200, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=60)
    lines = list(gen.iter_bytes())
    client = redis.Redis.from_url(redis_server.url)
    for i in range(0, len(lines), 500):
        pipe = client.pipeline(transaction=False)
        for line in lines[i : i + 500]:
            pipe.xadd(stream, {"data": line})
        pipe.execute()
    settings = FlowSettings(
        rules=str(REPO / "examples/rules.yaml"),
        sources=[f"{redis_server.url}?stream={stream}&start=0"],
        decisions=f"file:{tmp_path / 'decisions.jsonl'}",
        shards=4,
        metrics=str(port),
    )
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    procs = [start(settings, "-i", str(i), "-a", addresses) for i in (0, 1)]
    urls = [f"http://127.0.0.1:{port + i}" for i in (0, 1)]
    try:

        def read_all() -> bool:
            total = 0.0
            for url in urls:
                if not _ready(url):
                    return False
                total += sum(
                    s.value for s in _samples(url).get("keymoment_input_records_total", [])
                )
            return total == len(lines)

        assert wait_until(read_all, 120), [p.poll() for p in procs]
        decided: Counter = Counter()
        for i, url in enumerate(urls):
            for s in _samples(url).get("keymoment_decisions_total", []):
                assert s.labels["process"] == str(i)
                decided[i] += int(s.value)
        log = tmp_path / "decisions.jsonl"
        assert wait_until(
            lambda: log.exists() and len(log.read_bytes().splitlines()) == sum(decided.values()), 30
        )
        assert sum(decided.values()) > 50
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def test_bytewax_run_with_a_taken_metrics_port_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    from keymoment.flows.settings import FlowSettings
    from tests.integration.flowkit import start

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = FlowSettings(
            rules=str(REPO / "examples/rules.yaml"), sources=[f"file:{tmp_path / 'none.jsonl'}"],
            clock="event", metrics=str(port),
        )  # fmt: skip
        (tmp_path / "none.jsonl").write_bytes(b"")
        proc = start(settings)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


class _Feed:
    """A source server a test kills and starts again, and how to write events to it."""

    def __init__(self, kind: str, redis_server) -> None:  # type: ignore[no-untyped-def]
        self.kind = kind
        if kind == "redis":
            self.server, self.url, self.part = (
                redis_server,
                f"{redis_server.url}?stream=tx&start=0",
                "tx",
            )
        else:
            from tests.integration.test_sources_kafka import create_topic
            from tests.support.servers import KafkaBroker

            self.server = KafkaBroker().start()
            topic = create_topic(self.server.bootstrap)
            self.url, self.part = f"kafka://{self.server.bootstrap}/{topic}", f"0-{topic}"
        self.lost = "unreachable" if kind == "redis" else "no broker connection up"

    def add(self, count: int) -> int:
        lines = list(Generator(seed=4, customers=100, days=60).iter_bytes(limit=count))
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.server.url)
            for line in lines:
                client.xadd("tx", {"data": line})
        else:
            from tests.integration.test_sources_kafka import produce

            produce(self.server.bootstrap, self.url.rsplit("/", 1)[1], list(lines))
        return len(lines)

    def kill(self) -> None:
        if self.kind == "redis":
            self.server.kill()  # the fixture's server: started again on the same port
        else:
            self.server.stop()


@pytest.mark.parametrize("kind", ["redis", "kafka"])
def test_readiness_follows_a_source_server_lost_and_back(fresh_redis, tmp_path, kind) -> None:  # type: ignore[no-untyped-def]
    """A real `keymoment run --metrics` on the wall clock over a Redis stream or a Kafka
    topic: ready; the server killed: 503 naming the partition; the server back: ready
    again (and on Redis, whose source reads on from its last id, the new entries read)."""
    feed = _Feed(kind, fresh_redis)
    first = feed.add(200)
    port = free_port()
    rules = str(REPO / "examples/rules.yaml")
    log = f"file:{tmp_path / 'decisions.jsonl'}"
    command = [sys.executable, "-m", "keymoment", "run", "--rules", rules, "--source", feed.url,
               "--decisions", log, "--metrics", str(port)]  # fmt: skip
    with (tmp_path / "stderr").open("w") as err:  # librdkafka logs each retry: not a pipe
        proc = subprocess.Popen(command, stderr=err)
    url = f"http://127.0.0.1:{port}"
    records = lambda: sum(s.value for s in _samples(url)["keymoment_input_records_total"])  # noqa: E731
    try:
        assert wait_until(lambda: _ready(url) and records() == first, 60), proc.poll()
        feed.kill()
        assert wait_until(lambda: not _ready(url), 30)
        status, text = _get(url + "/readyz")
        assert status == 503 and f"sources: {feed.part}: {feed.lost}" in text, text
        feed.server.start()
        assert wait_until(lambda: _ready(url), 30), _get(url + "/readyz")
        if kind == "redis":  # an empty server again; its new ids are later than the last read
            second = feed.add(100)
            assert wait_until(lambda: records() == first + second, 30), (records(), first)
        assert first == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if kind == "kafka":
            feed.server.stop()
