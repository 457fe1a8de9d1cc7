"""Does `keymoment console` keep up with 10,000 decisions/s? (issue 11; not a timed test)

    python bench/bench_console.py [--rate 10000] [--seconds 20] [--backlog 300000]

Runs the real `keymoment console` as a subprocess following a JSONL decision
log, with a client asking for every panel once a second (as the page does),
and measures, in the same run:

1. paced: this script appends decisions at `--rate` per second (batches every
   50 ms) for `--seconds`; every 0.25 s it reads the console's `/status` and
   records how far the console's count is behind what was written. It prints
   the write rate reached, the largest backlog (decisions and seconds of
   input), the time to catch up after the last write, and the console's CPU
   seconds per 10,000 decisions;
2. capacity: a new console over a log of `--backlog` decisions already
   written, from the start: decisions/s it ingests flat out (with the panel
   client running), and its CPU seconds.

The decisions are copies of a real backtest decision log over the generator's
bank (customer tokens spread over 100,000 customers, `decided_at` = now).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson

from keymoment.connectors.generator import Generator

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-console-token"


def templates(out: Path) -> list[dict]:
    """Real decision records: a backtest over 300 generated customers for 120 days."""
    gen = Generator(seed=3, customers=300, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=120)
    (out / "c.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    (out / "e.jsonl").write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    cmd = [
        sys.executable,
        "-m",
        "keymoment",
        "backtest",
        "--rules",
        str(REPO / "examples/rules.yaml"),
    ]
    cmd += ["--events", str(out / "e.jsonl"), "--customers", str(out / "c.jsonl")]
    subprocess.run([*cmd, "--decisions", str(out / "t.jsonl")], check=True, capture_output=True)
    return [orjson.loads(line) for line in (out / "t.jsonl").read_bytes().splitlines()]


def lines(tpl: list[dict], start: int, n: int) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = []
    for i in range(start, start + n):
        record = dict(tpl[i % len(tpl)], customer_id=f"C{i * 7919 % 100_000:06d}", decided_at=now)
        out.append(orjson.dumps(record) + b"\n")
    return b"".join(out)


class Console:
    """`keymoment console` in a subprocess, with a client polling its panels every second."""

    def __init__(self, log: Path, port: int) -> None:
        env = dict(os.environ, KEYMOMENT_CONSOLE_TOKEN=TOKEN)
        cmd = [sys.executable, "-m", "keymoment", "console", "--decisions", f"file:{log}"]
        self.proc = subprocess.Popen(
            [*cmd, "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE, text=True
        )
        self.base = f"http://127.0.0.1:{port}"
        self.proc.stdout.readline()  # type: ignore[union-attr]  # "open URL": it listens
        self.stop, self.slow = threading.Event(), 0
        threading.Thread(target=self._panels, daemon=True).start()

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.read()

    def seen(self) -> int:
        return orjson.loads(self.get("/status"))["decisions"]

    def _panels(self) -> None:
        """Every panel once a second, as an open page asks; a slow answer is counted, not fatal."""
        while not self.stop.wait(1.0):
            try:
                self.get("/panels")
            except OSError:
                self.slow += 1

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.stop.set()
        self.proc.terminate()
        self.proc.wait(10)


def paced(tpl: list[dict], out: Path, rate: int, seconds: float, port: int) -> None:
    log = out / "paced.jsonl"
    log.touch()
    console = Console(log, port)
    cpu0, written, worst, worst_at = console.cpu(), 0, 0, 0.0
    step, batch = 0.05, int(rate * 0.05)
    started = time.monotonic()
    next_probe = started
    with log.open("ab") as f:
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) / step + 1) * batch
            if due > written:
                f.write(lines(tpl, written, due - written))
                f.flush()
                written = due
            if now >= next_probe:
                behind = written - console.seen()
                if behind > worst:
                    worst, worst_at = behind, now - started
                next_probe = now + 0.25
            time.sleep(max(0.0, started + (written // batch) * step - time.monotonic()))
    wrote_for = time.monotonic() - started
    while console.seen() < written:
        time.sleep(0.02)
    catch_up = time.monotonic() - started - wrote_for
    cpu = console.cpu() - cpu0
    console.close()
    print(
        f"paced: wrote {written:,} decisions in {wrote_for:.1f}s ({written / wrote_for:,.0f}/s); "
        f"largest backlog {worst:,} decisions ({worst / rate:.2f}s of input) at {worst_at:.1f}s; "
        f"caught up {catch_up:.2f}s after the last write; console CPU {cpu:.1f}s "
        f"({cpu / written * 10_000:.2f}s per 10,000 decisions); panel requests over 10 s: "
        f"{console.slow}"
    )


def capacity(tpl: list[dict], out: Path, count: int, port: int) -> None:
    log = out / "backlog.jsonl"
    with log.open("wb") as f:
        for start in range(0, count, 10_000):
            f.write(lines(tpl, start, min(10_000, count - start)))
    started = time.monotonic()
    console = Console(log, port)
    cpu0 = console.cpu()
    while console.seen() < count:
        time.sleep(0.05)
    took, cpu = time.monotonic() - started, console.cpu() - cpu0
    console.close()
    print(
        f"capacity: {count:,} decisions from the start in {took:.1f}s ({count / took:,.0f}/s, "
        f"startup included), console CPU {cpu:.1f}s ({count / max(cpu, 1e-9):,.0f} per CPU second)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=300_000)
    parser.add_argument("--port", type=int, default=18431)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tpl = templates(Path(tmp))
        print(f"{len(tpl):,} template decisions; console on loopback, panels polled once a second")
        paced(tpl, Path(tmp), args.rate, args.seconds, args.port)
        capacity(tpl, Path(tmp), args.backlog, args.port + 1)


if __name__ == "__main__":
    main()
