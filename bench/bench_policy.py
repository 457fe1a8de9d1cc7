"""Cap decisions per second: memory store, Redis one at a time and batched, beside a Redis PING.

Run: `.venv/bin/python bench/bench_policy.py [--reservations 20000] [--repeat 5]
[--events 100000] [--recorded 200000] [--only-recorded]`. First (unless `--recorded 0`)
the policy's share of a real backtest: the calls a backtest's shard makes on the
generator's stream (`bench/four_rules.yaml`, then `examples/rules.yaml`) are recorded and
replayed into the policy and into `FirstChannelPolicy`, decision-log lines included, with
automatic garbage collection off as in the backtest; `on - off` per candidate is what the
policy costs (docs/policy.md, rounds 3 to 6). It starts a private
redis-server on a free port (tests.support.servers.RedisServer), so the PING round
trip printed next to the Redis figures comes from the same run on the same machine: a
Redis figure near 1/PING means the round trip is the cost. Also prints:

- the whole policy's cost per candidate (memory store, and Redis one call per
  candidate and calls of 100) next to the policy-off baseline (`FirstChannelPolicy`)
  on the same candidates;
- the `keymoment backtest` command run in-process on a synthetic stream
  (`keymoment.connectors.generator.Generator`, examples/rules.yaml) with
  `--policy on` and `--policy off`: events/s of the whole command.

Every figure is the best of `--repeat` runs, on fresh state each time: the machine
is shared, and the best run is the one least disturbed by other work.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keymoment.commands import backtest  # noqa: E402
from keymoment.config import RulesFile, load_rules  # noqa: E402
from keymoment.connectors.generator import Generator  # noqa: E402
from keymoment.flows.collect import no_automatic_gc  # noqa: E402
from keymoment.flows.replay import Replay  # noqa: E402
from keymoment.policy import ContactPolicy, FirstChannelPolicy, build_policy  # noqa: E402
from keymoment.policy.decision import Decision  # noqa: E402
from keymoment.policy.planning import Planner  # noqa: E402
from keymoment.state import MemoryCapStore  # noqa: E402
from keymoment.state.redis_caps import RedisCapStore  # noqa: E402
from keymoment.triggers.candidate import Candidate  # noqa: E402
from keymoment.triggers.events import CustomerProfile  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402

START = datetime(2026, 3, 2, tzinfo=UTC)
T = TypeVar("T")
Profiles = Mapping[str, CustomerProfile]
Call = tuple[str, list[Candidate], datetime]  # "decide" / "retry" / "settle", candidates, clock
EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "examples" / "rules.yaml"
FOUR_RULES = Path(__file__).resolve().parent / "four_rules.yaml"
RULES = {
    "version": 1,
    "timezone": "Asia/Shanghai",
    "rules": [
        {"rule_id": "r1", "trigger": "dormancy", "campaign": "a"},
        {"rule_id": "r2", "trigger": "reactivation", "campaign": "b"},
    ],
    "campaigns": [
        {"campaign_id": "a", "offer_code": "A", "channels": ["app_push", "sms"], "holdout": 0.1},
        {
            "campaign_id": "b",
            "offer_code": "B",
            "channels": ["sms", "app_push"],
            "priority": 5,
            "holdout": 0.1,
        },
    ],
    "channels": {"sms": {"send_hours": "08:00-21:00"}},
    "caps": [
        {"id": "daily", "scope": "customer", "limit": 1, "window": "day"},
        {"id": "weekly", "scope": "customer", "limit": 3, "window": "7d"},
        {"id": "sms", "scope": "customer_channel", "channel": "sms", "limit": 2, "window": "7d"},
    ],
}


def candidates(n: int, customers: int, seed: int = 1) -> list[Candidate]:
    rng = random.Random(seed)
    out, at = [], START
    for i in range(n):
        at += timedelta(seconds=rng.randrange(1, 60))
        rule, camp = rng.choice([("r1", "a"), ("r2", "b")])
        out.append(Candidate(rule, "t", camp, f"C{rng.randrange(customers)}", at, f"E{i}"))
    return out


def profiles(customers: int) -> dict[str, CustomerProfile]:
    return {
        f"C{i}": CustomerProfile(customer_id=f"C{i}", consent={"sms": True, "app_push": True})
        for i in range(customers)
    }


def rate(label: str, count: int, seconds: float, note: str = "") -> None:
    each = seconds * 1e6 / count
    print(f"  {label:<44} {count / seconds:>12,.0f} /s   ({each:,.1f} us each) {note}")


def best_of(
    repeat: int,
    run: Callable[[T], object],
    setup: Callable[[], T],
    timer: Callable[[], float] = time.perf_counter,
) -> float:
    """The shortest of `repeat` timed `run(setup())` calls (the setup is not timed).

    `timer=time.process_time` counts CPU seconds of this process (the machine is shared).
    """
    best = float("inf")
    for _ in range(repeat):
        state = setup()
        started = timer()
        run(state)
        best = min(best, timer() - started)
    return best


def reservations_for(n: int) -> list:  # type: ignore[type-arg]
    rules = RulesFile.model_validate(RULES)
    planner = Planner(rules)
    profs = profiles(n // 4)
    out = []
    for c in candidates(n, n // 4):
        plan = planner.plan(c, rules.campaign(c.campaign), profs[c.customer_id], c.triggered_at)
        out.append(plan.reservation)
    return out


def bench_stores(n: int, url: str, repeat: int) -> None:
    reservations = reservations_for(n)
    checks = sum(len(o.checks) for r in reservations for o in r.options) / len(reservations)
    print(
        f"cap reservations: {n:,} for {n // 4:,} customers, {checks:.1f} cap checks each "
        "(2 channel options x 2-3 caps)"
    )
    rate(
        "memory store, one at a time",
        n,
        best_of(repeat, lambda store: [store.reserve(r) for r in reservations], MemoryCapStore),
    )
    prefixes = iter(range(10_000))
    for label, batch in [
        ("redis store, one at a time", 1),
        ("redis store, batches of 100", 100),
        ("redis store, batches of 500", 500),
    ]:
        chunks = [reservations[i : i + batch] for i in range(0, n, batch)]
        seconds = best_of(
            repeat,
            lambda store, chunks=chunks: [store.reserve_many(chunk) for chunk in chunks],
            lambda: _redis(url, prefixes),
        )
        rate(label, n, seconds)


def bench_ping(url: str, count: int = 5000) -> None:
    client = RedisCapStore(url, timeout=5.0).client
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - t)
    samples.sort()
    median, p99 = statistics.median(samples), samples[int(count * 0.99)]
    print(
        f"  {'redis PING round trip (same run)':<44} median {median * 1e6:,.0f} us, "
        f"p99 {p99 * 1e6:,.0f} us  (=> at most {1 / median:,.0f} sequential calls/s)"
    )


def bench_policy(n: int, url: str, repeat: int) -> None:
    rules = RulesFile.model_validate(RULES)
    cands, profs = candidates(n, n // 4, seed=2), profiles(n // 4)
    print(f"whole policy (suppression, holdout, arbitration, quiet hours, caps): {n:,} candidates")
    prefixes = iter(range(10_000))
    variants = [
        ("policy off (FirstChannelPolicy baseline)", lambda: FirstChannelPolicy(rules)),
        ("policy on, memory store", lambda: build_policy(rules, lists=[])),
        ("policy on, redis store", lambda: build_policy(rules, store=_redis(url, prefixes))),
    ]
    for label, make in variants:
        for size in (1, 100):
            batches = [cands[i : i + size] for i in range(0, n, size)]
            seconds = best_of(repeat, lambda policy, b=batches: decide_all(policy, b, profs), make)
            rate(f"{label}, calls of {size}", n, seconds)


def decide_all(policy, batches: list[list[Candidate]], profs) -> None:  # type: ignore[no-untyped-def]
    for batch in batches:
        policy.decide(batch, profs, batch[-1].triggered_at)


def _redis(url: str, prefixes) -> RedisCapStore:  # type: ignore[no-untyped-def]
    return RedisCapStore(url, prefix=f"bench{next(prefixes)}", timeout=5.0)


def bench_backtest(events: int, repeat: int) -> None:
    """`keymoment backtest` in-process with `--policy on` and `off`, on the same input files."""
    customers = max(events // 20, 10)  # the generator makes about 22 events per customer
    with tempfile.TemporaryDirectory() as tmp:
        events_path, customers_path = Path(tmp) / "events.jsonl", Path(tmp) / "customers.jsonl"
        decisions = Path(tmp) / "decisions.jsonl"
        gen = Generator(seed=7, customers=customers, days=240, noise=0.001)
        events_path.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes(limit=events)))
        customers_path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
        lines = events_path.read_bytes().count(b"\n")
        print(
            f"backtest command, examples/rules.yaml, {lines:,} event lines, {customers:,} customers"
        )
        for policy in ("off", "on"):
            args = backtest_args(events_path, customers_path, decisions, policy)
            seconds = best_of(repeat, lambda args: _quiet(backtest.run, args), lambda a=args: a)
            made = decisions.read_bytes().count(b"\n")
            rate(
                f"backtest --policy {policy}", lines, seconds, f"(event lines; {made:,} decisions)"
            )


class Recording:
    """A policy that keeps every call made to it and its answers, so they can be replayed.

    The backtest's shard calls `decide`, `retry_pending` and `settle`; the rest
    (`pending`, `snapshot`, ...) goes straight to the wrapped policy.
    """

    def __init__(self, policy: ContactPolicy) -> None:
        self.policy = policy
        self.calls: list[Call] = []
        self.decisions: list[Decision] = []

    def decide(
        self, candidates: Sequence[Candidate], profiles: Profiles, clock_at: datetime
    ) -> list[Decision]:
        self.calls.append(("decide", list(candidates), clock_at))
        return self._kept(self.policy.decide(candidates, profiles, clock_at))

    def retry_pending(self, clock_at: datetime) -> list[Decision]:
        self.calls.append(("retry", [], clock_at))
        return self._kept(self.policy.retry_pending(clock_at))

    def settle(self, clock_at: datetime) -> list[Decision]:
        self.calls.append(("settle", [], clock_at))
        return self._kept(self.policy.settle(clock_at))

    def _kept(self, decisions: list[Decision]) -> list[Decision]:
        self.decisions += decisions
        return decisions

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def replay_calls(policy: ContactPolicy, calls: list[Call], profs: Profiles) -> list[bytes]:
    """The recorded calls into `policy`, each call's decisions turned into what the backtest
    writes: the decision log's lines, and no offers (`ShardOutput.decision_lines`)."""
    lines = []
    for kind, batch, at in calls:
        if kind == "decide":
            decisions = policy.decide(batch, profs, at)
        else:
            decisions = policy.retry_pending(at) if kind == "retry" else policy.settle(at)
        if decisions:
            lines.append(b"".join([d.log_line() for d in decisions]))
    return lines


def bench_recorded(events: int, repeat: int) -> None:
    """The policy's share of a backtest: its own calls, replayed into the policy and into off.

    One in-process backtest per rules file records every call the shard makes; the
    same calls then go to a fresh `RulesContactPolicy` (memory store) and to
    `FirstChannelPolicy`, each decision turned into its decision-log line, as the
    backtest does. on - off is what the policy adds per candidate.
    The replayed policy must give the recording run's records (minus `decided_at`).
    """
    customers = max(events // 10, 10)
    with tempfile.TemporaryDirectory() as tmp:
        events_path, customers_path = Path(tmp) / "events.jsonl", Path(tmp) / "customers.jsonl"
        gen = Generator(seed=1, customers=customers, days=240, activity=0.3)
        events_path.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes(limit=events)))
        customers_path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
        profs = backtest._profiles(str(customers_path))
        for rules_path in (FOUR_RULES, EXAMPLE_RULES):
            rules = load_rules(str(rules_path))
            recording = Recording(build_policy(rules))
            replay = Replay(rules, profs, recording, until=gen.until_at)
            for _ in replay.outputs([str(events_path)]):
                pass
            replayed_costs(rules, rules_path.name, recording, profs, repeat)


def replayed_costs(
    rules: RulesFile, name: str, recording: Recording, profs: Profiles, repeat: int
) -> None:
    calls, fixed = recording.calls, datetime(2026, 1, 1, tzinfo=UTC)
    n = sum(len(batch) for _, batch, _ in calls)
    print(f"recorded backtest calls, {name}: {len(calls):,} calls, {n:,} candidates")
    makers = {
        "off": lambda: FirstChannelPolicy(rules, clock=lambda: fixed),
        "on": lambda: build_policy(rules, clock=lambda: fixed),
    }
    expected = [_undated(orjson.loads(d.log_line())) for d in recording.decisions]
    replayed = b"".join(replay_calls(makers["on"](), calls, profs)).splitlines()
    if [_undated(orjson.loads(line)) for line in replayed] != expected:
        raise SystemExit("the replayed policy decided differently from the recorded run")
    cost = {}
    for label, make in makers.items():
        with no_automatic_gc():  # as the backtest replays (flows/collect.py, FrozenGc)
            gc.freeze()
            cost[label] = best_of(
                repeat, lambda p: replay_calls(p, calls, profs), make, time.process_time
            )
        rate(f"policy {label} + log lines, recorded calls", n, cost[label])
    share = (cost["on"] - cost["off"]) * 1e6 / n
    print(f"  {'the policy share (on - off)':<44} {share:>12,.1f} us per candidate")


def _undated(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "decided_at"}


def backtest_args(events: Path, customers: Path, decisions: Path, policy: str):  # type: ignore[no-untyped-def]
    return argparse.Namespace(
        rules=str(EXAMPLE_RULES),
        events=[str(events)],
        customers=str(customers),
        until=None,
        decisions=str(decisions),
        dead_letters=None,
        state=None,
        prefix=None,
        policy=policy,
        json=None,
        html=None,
    )


def _quiet(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        run(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reservations", type=int, default=20000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--recorded",
        type=int,
        default=200_000,
        metavar="EVENTS",
        help="events of the stream whose backtest calls are replayed (0: skip) [%(default)s]",
    )
    parser.add_argument("--only-recorded", action="store_true", help="only that part")
    args = parser.parse_args()
    if args.recorded:
        bench_recorded(args.recorded, args.repeat)
    if args.only_recorded:
        return
    server = RedisServer().start()
    try:
        print(
            f"python {sys.version.split()[0]}, redis-server on 127.0.0.1:{server.port}, "
            f"best of {args.repeat}"
        )
        bench_ping(server.url)
        bench_stores(args.reservations, server.url, args.repeat)
        bench_ping(server.url)
        bench_policy(args.reservations, server.url, args.repeat)
    finally:
        server.stop()
    bench_backtest(args.events, args.repeat)


if __name__ == "__main__":
    main()
