"""The plain-Python baseline of issue 13: the four rules of `four_rules.yaml`, by hand.

What a programmer would write for exactly these rules and nothing else:
orjson, dicts and lists, integer microsecond times, one timer heap, no
validation, no dead letters, no contact policy, the GC off. It exists so
that every benchmark can print its pace as a ratio to this one *in the same
run* (the machine is shared; absolute figures move with the load, ratios
much less).

    python bench/baseline_plain.py --events 200000 --customers 20000   # and check vs the engine

`run(payloads, until_us)` returns the candidates as tuples
`(rule_id, customer_id, event_id, triggered_at_us, timer)`;
`engine_candidates` gives the engine's in the same form, and the main
program (and `tests/unit/test_baseline_plain.py`) checks that they are
equal, so the baseline is known to do the same work.

The loop is one function on purpose: locals and no calls are how such a
program gets its speed, and it is the yardstick, not project code.
"""

from __future__ import annotations

import argparse
import gc
import time
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime
from heapq import heappop, heappush
from pathlib import Path
from typing import Any

import orjson

RULES = Path(__file__).resolve().parent / "four_rules.yaml"
DAY_US = 86_400_000_000
DEDUPE, LOOKBACK, INACTIVE, MEMORY, WINDOW = DAY_US, 90 * DAY_US, 90 * DAY_US, 400 * DAY_US, DAY_US
HORIZON = MEMORY + 1  # the engine's eviction: widest rule horizon plus one microsecond
BANK = frozenset({"interest", "fee", "standing_order", "loan_repayment"})
THIRD = frozenset({"payroll", "pension", "transfer_in"})
ACTIVE_ACTIONS = frozenset({"login", "page_view", "click", "search", "apply_start", "apply_submit"})
DEPOSIT_KINDS = frozenset({"cash_deposit", "transfer_in"})
MIN_AMOUNT = 50_000 * 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Cand = tuple[str, str, str, int, bool]


def to_us(text: str) -> int:
    """An RFC 3339 time as integer microseconds since the epoch."""
    delta = datetime.fromisoformat(text) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def run(payloads: list[bytes], until_us: int | None) -> list[Cand]:
    """All candidates of the four rules over `payloads` (in order), then the end of input."""
    return _run(payloads, until_us, {})


def held_after(payloads: list[bytes], until_us: int | None) -> int:
    """Customers whose state the baseline holds at the end (for bench_memory.py)."""
    custs: dict[str, list[Any]] = {}
    _run(payloads, until_us, custs)
    return len(custs)


def _run(payloads: list[bytes], until_us: int | None, custs: dict) -> list[Cand]:  # noqa: C901, PLR0912, PLR0915
    loads, fromiso = orjson.loads, datetime.fromisoformat
    # custs: customer -> [last_seen, seen ids, last_act, act_id, fired_for, queued,
    #                     deposits, window]
    heap: list[tuple[int, str, int]] = []  # (deadline, customer, 0 dormancy | 1 eviction)
    out: list[Cand] = []
    wm = -(1 << 62)

    def due(mark: int) -> None:
        while heap and heap[0][0] <= mark:
            deadline, cid, kind = heappop(heap)
            s = custs.get(cid)
            if s is None:
                continue
            if kind:
                actual = s[0] + HORIZON
                if actual > deadline:
                    heappush(heap, (actual, cid, 1))
                else:
                    del custs[cid]
                continue
            s[5] = None
            if s[2] is None or s[4] == s[2]:
                continue
            actual = s[2] + INACTIVE
            if actual > deadline:
                s[5] = actual
                heappush(heap, (actual, cid, 0))
            else:
                s[4] = s[2]
                out.append(("gone-quiet", cid, s[3], actual, True))

    for raw in payloads:
        d = loads(raw)
        cid, eid = d["customer_id"], d["event_id"]
        delta = fromiso(d["occurred_at"]) - EPOCH
        t = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        if t > wm:
            wm = t
            if heap and heap[0][0] <= t:
                due(t)
        s = custs.get(cid)
        if s is not None:
            seen_at = s[1].get(eid)
            if seen_at is not None and abs(t - seen_at) <= DEDUPE:
                continue
        else:
            s = custs[cid] = [t, {}, None, None, None, None, None, None]
            heappush(heap, (t + HORIZON, cid, 1))
        newest = t if t > s[0] else s[0]
        seen = s[1]
        if s[0] < newest - DEDUPE:
            seen.clear()
        else:
            seen.pop(eid, None)
            while seen and seen[oldest := next(iter(seen))] < newest - DEDUPE:
                del seen[oldest]
        seen[eid] = t
        s[0] = newest
        typ = d["type"]
        if typ == "transaction":
            kind = d["kind"]
            by = d.get("initiated_by") or (
                "bank" if kind in BANK else "third_party" if kind in THIRD else "customer"
            )
            active = by == "customer"
        else:
            active = typ == "app" and d["action"] in ACTIVE_ACTIONS
        prev = None
        if active:
            prev = s[2]
            if prev is None or t >= prev:  # a tie: the last activity arms dormancy (issue 8)
                s[2], s[3] = t, eid
        if typ == "transaction" and d["direction"] == "credit" and d["kind"] in DEPOSIT_KINDS:
            amount = round(float(d["amount"]) * 100)
            deps = s[6]
            if deps is None:
                deps = s[6] = ([], [])
            times, amounts = deps
            drop = bisect_right(times, max(t, times[-1]) - LOOKBACK) if times else 0
            if drop:
                del times[:drop], amounts[:drop]
            earlier = sorted(amounts[bisect_right(times, t - LOOKBACK) : bisect_right(times, t)])
            if amount >= MIN_AMOUNT:
                n = len(earlier)
                mid = n // 2
                if n < 3 or 2 * amount >= 5 * (
                    2 * earlier[mid] if n % 2 else earlier[mid - 1] + earlier[mid]
                ):
                    out.append(("big-deposit", cid, eid, t, False))
            pos = bisect_right(times, t)
            times.insert(pos, t)
            amounts.insert(pos, amount)
        if active:
            if s[5] is None and s[2] is not None:
                s[5] = s[2] + INACTIVE
                heappush(heap, (s[5], cid, 0))
            if prev is not None and INACTIVE <= t - prev <= MEMORY:
                out.append(("welcome-back", cid, eid, t, False))
        if typ == "app" and d["action"] == "page_view" and d.get("product") == "wealth":
            win = s[7]
            if win is None:
                win = s[7] = [[], False]
            times = win[0]
            drop = bisect_right(times, (max(t, times[-1]) if times else t) - WINDOW)
            if drop:
                del times[:drop]
            pos, first = bisect_right(times, t), bisect_right(times, t - WINDOW)
            was = win[1] and first != pos
            times.insert(pos, t)
            win[1] = pos + 1 - first >= 3
            if win[1] and not was:
                out.append(("wealth-curious", cid, eid, t, False))
        if heap and heap[0][0] <= wm:
            due(wm)
    end = until_us if until_us is not None else wm
    if end > wm:
        wm = end
    due(wm)
    return out


def engine_candidates(
    payloads: list[bytes],
    until: datetime | None,
    rules: Path = RULES,
    profiles: dict[str, Any] | None = None,
) -> list[Cand]:
    """The project's decoder and engine over the same payloads (each event with its profile
    from `profiles`, by customer id, when given), candidates as `run` gives them."""
    from keymoment.config import load_rules
    from keymoment.connectors.wire import DeadLetter, decode
    from keymoment.triggers.engine import Engine

    engine = Engine(load_rules(rules))
    by_id = profiles or {}
    found = []
    for raw in payloads:
        event = decode(raw, "baseline")
        if type(event) is not DeadLetter:
            profile = by_id.get(event.customer_id)  # type: ignore[union-attr]
            found.extend(engine.feed(event, profile).candidates)  # type: ignore[arg-type]
    found.extend(engine.advance(until or engine.watermark))  # type: ignore[arg-type]
    return [(c.rule_id, c.customer_id, c.event_id, _us(c.triggered_at), c.timer) for c in found]


def _us(at: datetime) -> int:
    return to_us(at.isoformat())


def timed(payloads: list[bytes], until_us: int | None) -> tuple[float, float, list[Cand]]:
    """Wall and CPU seconds of one baseline run, GC off as the baseline's definition says."""
    return gc_off(run, payloads, until_us)


def gc_off(baseline: Callable[..., list[Cand]], *args: Any) -> tuple[float, float, list[Cand]]:
    """Wall and CPU seconds of `baseline(*args)` with automatic collections off, and its result."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        found = baseline(*args)
        return time.perf_counter() - wall, time.process_time() - cpu, found
    finally:
        gc.enable()


def generated(events: int, customers: int, seed: int = 1) -> tuple[list[bytes], datetime]:
    """The generator's stream (what bench_engine uses), and its end of input."""
    from keymoment.connectors.generator import Generator

    gen = Generator(seed=seed, customers=customers, days=240, activity=0.3)
    return list(gen.iter_bytes(limit=events)), gen.until_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    payloads, until = generated(args.events, args.customers)
    wall, cpu, found = min(timed(payloads, _us(until)) for _ in range(args.repeat))
    n = len(payloads)
    print(f"baseline: {n:,} events, {wall:.2f} s wall, {cpu:.2f} s CPU: {n / cpu:,.0f}/CPU-s")
    same = sorted(found) == sorted(engine_candidates(payloads, until))
    print(f"candidates: {len(found):,}, equal to the engine's: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
