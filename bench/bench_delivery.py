"""Delivery under a failing gateway: does one bad channel slow the others and the decision log?

    python bench/bench_delivery.py [--customers 4000] [--days 240] [--repeat 3] [--timeout 0.5]

Replays seeded synthetic events through the whole live flow (`build_flow`,
`run_main`, event clock, one worker) with two real local webhook gateways
(`tests/support/gateway.py`, threaded `http.server`, every signature
verified with svix, in a child process so their CPU is not the flow's):

- `sms` goes to the faulty gateway: per request 30% 500, 10% hang past the
  client timeout (answered 200 after twice the timeout), 5% 429 with
  `Retry-After: 1`, 2% 400, the rest 200 (the fault mix of issue 8);
- `app_push` goes to a healthy gateway; every other channel to a JSONL file;
- the decision log goes to a JSONL file.

Each "faulty" run is interleaved with a "fault-free" run (both gateways
healthy) on the same input in the same process; best of `--repeat` each.
Reported per run: decision-log events/s (input events / time from start to
the last decision leaving the engine), healthy-channel offers/s (offers the
healthy gateway accepted / time to its last acceptance), the faulty
channel's accepted offers and dead letters, the whole run's wall time
(including the faulty channel's drain at end of input) and CPU seconds of
the flow's process (the gateways' are not included). Goal (issue 8): the faulty run keeps at
least 80% of the fault-free pace for everything but the faulty channel.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import orjson
from bytewax.testing import run_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keymoment.connectors.generator import Generator  # noqa: E402
from keymoment.flows.dataflow import build_flow  # noqa: E402
from tests.integration.flowkit import replay_settings  # noqa: E402
from tests.support.gateway import SLOW, Gateway  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-delivery-key!!").decode()


class FaultMix:
    """Per request: 30% 500, 10% hang, 5% 429 (Retry-After), 2% 400, else 200; seeded."""

    def __init__(self, seed: int) -> None:
        self.rng, self.lock = random.Random(seed), threading.Lock()
        self.answers: Counter[int] = Counter()

    def __call__(self, offer_id: str, attempt: int) -> int:
        with self.lock:
            r = self.rng.random()
        status = 500 if r < 0.30 else SLOW if r < 0.40 else 429 if r < 0.45 else 400
        status = status if r < 0.47 else 200
        self.answers[status] += 1
        return status


class Pace:
    """The `observe` hook: events seen and when the last decision left the engine."""

    def __init__(self) -> None:
        self.events, self.last = 0, 0.0

    def __call__(self, result: tuple) -> None:
        self.events += result[3]
        if result[0]:
            self.last = time.perf_counter()


def write_input(out: Path, customers: int, days: int) -> dict:
    gen = Generator(seed=5, customers=customers, days=days, noise=0.0)
    events, profiles = out / "events.jsonl", out / "customers.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    profiles.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    return {"events": events, "customers": profiles, "until": gen.until_at.isoformat()}


def serve_gateways(faulty: bool, timeout: float, urls: Queue, stop: Event, results: Queue) -> None:
    """Child process: the faulty and the healthy gateway, until `stop`; then what they saw.

    The gateways run in a process of their own so that their CPU (svix
    verification, http.server) is not charged to the flow, as with a real
    gateway elsewhere. Acceptance times are wall-clock (time.time).
    """
    script = FaultMix(seed=1) if faulty else (lambda o, n: 200)
    bad = Gateway(SECRET, script, slow_seconds=2 * timeout, retry_after="1")
    good = Gateway(SECRET)
    accepted_at: list[float] = []
    good_handle = good.handle

    def timed(body: bytes, headers: dict[str, str]) -> int:
        status = good_handle(body, headers)
        accepted_at.append(time.time())
        return status

    good.handle = timed  # type: ignore[method-assign]  # timestamps of the healthy gateway
    bad.start(), good.start()
    urls.put((bad.url, good.url))
    stop.wait()
    bad.stop(), good.stop()
    results.put((len(bad.accepted), sum(good.accepted.values()), max(accepted_at, default=0.0)))


def run_once(data: dict, out: Path, faulty: bool, timeout: float) -> dict:
    ctx = multiprocessing.get_context("fork")
    urls, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    child = ctx.Process(target=serve_gateways, args=(faulty, timeout, urls, stop, results))
    child.start()
    bad_url, good_url = urls.get(timeout=30)
    hook = f"?secret_env=KM_BENCH_SECRET&timeout={timeout}"
    sinks = {
        "sms": f"webhook+{bad_url}{hook}",
        "app_push": f"webhook+{good_url}{hook}",
        "*": f"file:{out / 'offers.jsonl'}",
    }
    settings = replay_settings(data, out, batch_size=1000).model_copy(update={"sinks": sinks})
    pace = Pace()
    flow = build_flow(settings, observe=pace)
    cpu0, t0, wall0 = time.process_time(), time.perf_counter(), time.time()
    run_main(flow)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    faulty_accepted, healthy, last_healthy = results.get(timeout=60)
    child.join(30)
    dead_path = out / "dead.jsonl"
    lines = dead_path.read_bytes().splitlines() if dead_path.exists() else []
    dead = Counter(orjson.loads(line)["reason"] for line in lines if b'"offer_id"' in line)
    return {
        "events/s": pace.events / max(pace.last - t0, 1e-9),
        "healthy offers/s": healthy / max(last_healthy - wall0, 1e-9),
        "healthy offers": healthy,
        "faulty accepted": faulty_accepted,
        "faulty dead letters": dict(dead),
        "wall s": wall,
        "cpu s": cpu,
        "events": pace.events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=0.5, help="webhook client timeout (s)")
    args = parser.parse_args()
    os.environ["KM_BENCH_SECRET"] = SECRET
    with tempfile.TemporaryDirectory() as tmp:
        data = write_input(Path(tmp), args.customers, args.days)
        runs: dict[str, list[dict]] = {"fault-free": [], "faulty": []}
        for i in range(args.repeat):
            for name in ("faulty", "fault-free"):
                out = Path(tmp) / f"{name}-{i}"
                out.mkdir()
                runs[name].append(run_once(data, out, name == "faulty", args.timeout))
                print(name, _fmt(runs[name][-1]), flush=True)
    best = {name: max(rs, key=lambda r: r["events/s"]) for name, rs in runs.items()}
    print("\nbest of", args.repeat)
    for name, r in best.items():
        print(f"  {name:<10} {_fmt(r)}")
    for key in ("events/s", "healthy offers/s"):
        ratio = best["faulty"][key] / max(best["fault-free"][key], 1e-9)
        print(f"  faulty / fault-free {key}: {ratio:.0%}")


def _fmt(r: dict) -> str:
    return (
        f"events {r['events']:,}: {r['events/s']:,.0f} events/s to the decision log; "
        f"healthy {r['healthy offers']:,} offers at {r['healthy offers/s']:,.0f}/s; "
        f"faulty accepted {r['faulty accepted']:,}, dead {r['faulty dead letters']}; "
        f"wall {r['wall s']:.1f} s, cpu {r['cpu s']:.1f} s"
    )


if __name__ == "__main__":
    main()
