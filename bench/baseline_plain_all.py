"""The plain-Python baseline of issue 13 for all eight rules of `examples/rules.yaml`, by hand.

The same style as bench/baseline_plain.py (its four rules, `four_rules.yaml`):
orjson, dicts and lists, integer microsecond times, one timer heap, no
validation, no dead letters, no contact policy, the GC off, one loop function
with locals, written for exactly these rules and nothing else (so the loop's first part,
the time, the dedupe memory and the activity clock, is baseline_plain.py's written again:
a call per event for it would slow the yardstick; the helpers around the loop are shared).
The rules:
big-deposit (large_deposit), payroll-found (salary_credit, only_first),
payroll-stopped (salary_missed, grace 10d), gone-quiet (dormancy),
welcome-back (reactivation), honeymoon (balance_milestone), wealth-curious
(window_threshold, for the customers its customer_filter admits) and
loan-abandoned (absence, 30m).

    python bench/baseline_plain_all.py --events 200000 --customers 20000   # and check vs the engine

`run(payloads, profiles, until_us)` takes the events and the customers file's
lines (what `keymoment backtest --customers` reads: the generator's
`profiles()` as JSONL) and returns the candidates as tuples
`(rule_id, customer_id, event_id, triggered_at_us, timer)`. It parses the
profiles itself into what the rules read, each customer's `opened_at` (the
milestone's onboarding start) and whether the wealth-curious filter admits
it, and copies both into a customer's state when the state is created (one
lookup per state, not per event). `engine_candidates` gives the engine's
candidates in the same form (each event's profile passed to `Engine.feed`),
and the main program (and `tests/unit/test_baseline_plain.py`) checks that
they are equal. The constants below are the rules file's, written out;
`check_constants` reads the file and says where they differ.

What it leaves out because no candidate depends on it: candidate attributes
(occurrence, amount band, gap days), so a payer keeps no payroll list (only
its series and its newest salary time), and `balance_after` is parsed only
for a transaction inside its customer's onboarding window.
"""

from __future__ import annotations

import argparse
import sys
from bisect import bisect_right
from datetime import datetime
from heapq import heappop, heappush
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_plain import EPOCH, gc_off, generated, to_us  # noqa: E402 - the sibling script
from baseline_plain import engine_candidates as plain_engine_candidates  # noqa: E402

RULES = Path(__file__).resolve().parent.parent / "examples" / "rules.yaml"
RULE_IDS = ("big-deposit", "payroll-found", "payroll-stopped", "gone-quiet", "welcome-back",
            "honeymoon", "wealth-curious", "loan-abandoned")  # fmt: skip
DAY_US = 86_400_000_000
DEDUPE, LOOKBACK, INACTIVE, MEMORY, WINDOW = DAY_US, 90 * DAY_US, 90 * DAY_US, 400 * DAY_US, DAY_US
HORIZON = MEMORY + 1  # the widest horizon (reactivation's memory, the salary memory) + 1 us
# The `salary:` block: 25d..35d between transfers, within 20% (1/5), 3 in a row, 400d memory.
MIN_I, MAX_I, TOL_OVER, TOL_UNDER, MIN_OCC, SAL_MEMORY = (
    25 * DAY_US, 35 * DAY_US, 1, 5, 3, 400 * DAY_US)  # fmt: skip
MISSED = MAX_I + 10 * DAY_US  # payroll-stopped: last salary + max_interval + grace
ONBOARDING = 90 * DAY_US
MILESTONES = (100_000, 1_000_000, 5_000_000)  # 1,000 / 10,000 / 50,000 in minor units
WITHIN = 30 * 60_000_000  # loan-abandoned
WEALTH_SEGMENTS, WEALTH_TAGS_NONE = frozenset({"mass_affluent", "affluent"}), frozenset({"staff"})
PRUNE_EVERY = 8  # the salary tracker forgets stale payers every 8 new ones
BANK = frozenset({"interest", "fee", "standing_order", "loan_repayment"})
THIRD = frozenset({"payroll", "pension", "transfer_in"})
ACTIVE_ACTIONS = frozenset({"login", "page_view", "click", "search", "apply_start", "apply_submit"})
DEPOSIT_KINDS = frozenset({"cash_deposit", "transfer_in"})
MIN_AMOUNT = 50_000 * 100
# Heap entries: (deadline, customer, kind[, counterparty]); the kinds are the engine's rule
# indices, so entries of one customer and deadline pop in the engine's order.
SALARY, DORMANCY, ABSENCE, EVICT = 2, 3, 7, 8
Cand = tuple[str, str, str, int, bool]


def run(payloads: list[bytes], profiles: list[bytes], until_us: int | None) -> list[Cand]:
    """All candidates of the eight rules over `payloads` (in order), then the end of input."""
    return _run(payloads, profiles, until_us, {})


def _run(  # noqa: C901, PLR0912, PLR0915
    payloads: list[bytes], profiles: list[bytes], until_us: int | None, custs: dict
) -> list[Cand]:
    loads, fromiso = orjson.loads, datetime.fromisoformat
    opened: dict[str, int] = {}  # customer -> opened_at (us); absent: its first event's time
    wealthy: set[str] = set()  # the customers wealth-curious's customer_filter admits
    for line in profiles:
        p = loads(line)
        cid = p["customer_id"]
        at = p.get("opened_at")
        if at is not None:
            delta = fromiso(at) - EPOCH
            opened[cid] = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        if p.get("segment") in WEALTH_SEGMENTS and WEALTH_TAGS_NONE.isdisjoint(p.get("tags", ())):
            wealthy.add(cid)
    # custs: customer -> [0 last_seen, 1 seen ids, 2 last_act, 3 act_id, 4 fired_for,
    #   5 dormancy queued, 6 deposits, 7 window (False: the filter refuses the customer),
    #   8 onboarding start (opened_at, else the state's first event), 9 payers, 10 armed salaries,
    #   11 salary queued, 12 milestones reached, 13 pending loan start, 14 absence queued]
    # payers: counterparty -> [last transfer at, its amount, series length, newest salary at]
    heap: list[tuple] = []
    out: list[Cand] = []
    wm = -(1 << 62)

    def due(mark: int) -> None:  # noqa: C901, PLR0912
        while heap and heap[0][0] <= mark:
            entry = heappop(heap)
            deadline, cid, kind = entry[0], entry[1], entry[2]
            s = custs.get(cid)
            if s is None:
                continue
            if kind == EVICT:
                actual = s[0] + HORIZON
                if actual > deadline:
                    heappush(heap, (actual, cid, EVICT))
                else:
                    del custs[cid]
            elif kind == DORMANCY:
                s[5] = None
                if s[2] is None or s[4] == s[2]:
                    continue
                actual = s[2] + INACTIVE
                if actual > deadline:
                    s[5] = actual
                    heappush(heap, (actual, cid, DORMANCY))
                else:
                    s[4] = s[2]
                    out.append(("gone-quiet", cid, s[3], actual, True))
            elif kind == SALARY:  # the engine's requeue / unqueue / fire, per counterparty
                cp = entry[3]
                if s[10] is None:
                    continue  # an entry of an evicted state: the new one armed nothing
                armed, queued = s[10].get(cp), s[11]
                if armed is not None and armed[0] > deadline:
                    q = queued.get(cp)
                    if q is None or q == deadline or armed[0] < q:
                        queued[cp] = armed[0]
                        heappush(heap, (armed[0], cid, SALARY, cp))
                    continue
                if queued.get(cp) == deadline:
                    del queued[cp]
                if armed is not None:
                    del s[10][cp]
                    out.append(("payroll-stopped", cid, armed[1], armed[0], True))
            else:  # ABSENCE
                pending = s[13]
                if pending is not None and pending[0] > deadline:
                    if s[14] is None or s[14] == deadline or pending[0] < s[14]:
                        s[14] = pending[0]
                        heappush(heap, (pending[0], cid, ABSENCE))
                    continue
                if s[14] == deadline:
                    s[14] = None
                if pending is not None:
                    s[13] = None
                    out.append(("loan-abandoned", cid, pending[1], pending[0], True))

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
            # the profile is read once per state: its onboarding start and the window's filter
            s = custs[cid] = [t, {}, None, None, None, None, None,
                              None if cid in wealthy else False, opened.get(cid, t),
                              None, None, None, 0, None, None]  # fmt: skip
            heappush(heap, (t + HORIZON, cid, EVICT))
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
            kind = None
            active = typ == "app" and d["action"] in ACTIVE_ACTIONS
        prev = None
        if active:
            prev = s[2]
            if prev is None or t >= prev:  # a tie: the last activity arms dormancy (issue 8)
                s[2], s[3] = t, eid
        if typ == "transaction":
            if s[12] < 3:  # honeymoon: a threshold newly passed within 90 days of opening
                start = s[8]
                if start <= t and t - start <= ONBOARDING:
                    bal = d.get("balance_after")
                    if bal is not None:
                        now = bisect_right(MILESTONES, round(float(bal) * 100))
                        if now > s[12]:
                            s[12] = now
                            out.append(("honeymoon", cid, eid, t, False))
            if d["direction"] == "credit":
                amount = round(float(d["amount"]) * 100) if kind in DEPOSIT_KINDS else 0
                # the salary tracker: what this credit is (1 a salary, 2 another credit)
                cp = d.get("counterparty") or ""
                payers = s[9]
                if payers is None:
                    payers = s[9] = {}
                reading, payer = 0, None
                if kind == "payroll" or (cp and kind == "transfer_in"):
                    payer = payers.get(cp)
                    if payer is None:
                        n = len(payers)
                        if n >= PRUNE_EVERY and n % PRUNE_EVERY == 0:
                            for c in [c for c, q in payers.items()
                                      if (q[0] is None or t - q[0] > MAX_I)
                                      and (q[3] is None or t - q[3] > SAL_MEMORY)]:  # fmt: skip
                                del payers[c]
                        payer = payers[cp] = [None, 0, 0, None]
                    if kind == "payroll":
                        reading = 1
                    else:
                        last = payer[0]
                        if (
                            last is not None
                            and MIN_I <= t - last <= MAX_I
                            and abs(amount - payer[1]) * TOL_UNDER <= TOL_OVER * payer[1]
                        ):
                            payer[2] += 1
                        else:
                            payer[2] = 1
                        payer[0], payer[1] = t, amount
                        reading = 1 if payer[2] >= MIN_OCC else 2
                elif cp and cp in payers:
                    reading = 2
                if reading == 1:
                    assert payer is not None
                    last = payer[3]
                    if last is None or t - last > SAL_MEMORY:
                        out.append(("payroll-found", cid, eid, t, False))
                    if last is None or t > last:
                        payer[3] = t
                    armed = s[10]
                    if armed is None:
                        armed = s[10] = {}
                        s[11] = {}
                    deadline = t + MISSED
                    armed[cp] = (deadline, eid)
                    q = s[11].get(cp)
                    if q is None or deadline < q:
                        s[11][cp] = deadline
                        heappush(heap, (deadline, cid, SALARY, cp))
                elif reading == 2 and s[10] is not None:
                    s[10].pop(cp, None)
                if kind in DEPOSIT_KINDS:
                    deps = s[6]
                    if deps is None:
                        deps = s[6] = ([], [])
                    times, amounts = deps
                    drop = bisect_right(times, max(t, times[-1]) - LOOKBACK) if times else 0
                    if drop:
                        del times[:drop], amounts[:drop]
                    earlier = sorted(
                        amounts[bisect_right(times, t - LOOKBACK) : bisect_right(times, t)]
                    )
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
                heappush(heap, (s[5], cid, DORMANCY))
            if prev is not None and INACTIVE <= t - prev <= MEMORY:
                out.append(("welcome-back", cid, eid, t, False))
        if typ == "app":
            action = d["action"]
            if action == "page_view":
                win = s[7]
                if win is not False and d.get("product") == "wealth":
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
            elif action == "apply_submit":
                if s[13] is not None and d.get("product") == "loan":
                    s[13] = None
            elif action == "apply_start" and s[13] is None and d.get("product") == "loan":
                deadline = t + WITHIN
                s[13] = (deadline, eid)
                if s[14] is None or deadline < s[14]:
                    s[14] = deadline
                    heappush(heap, (deadline, cid, ABSENCE))
        if heap and heap[0][0] <= wm:
            due(wm)
    end = until_us if until_us is not None else wm
    if end > wm:
        wm = end
    due(wm)
    return out


def check_constants(path: Path = RULES) -> list[str]:
    """Where the constants above differ from the rules file (nothing: they are its rules)."""
    from datetime import timedelta
    from decimal import Decimal

    from keymoment.config import load_rules

    ruleset = load_rules(path)

    def us(span: timedelta) -> int:
        return span // timedelta(microseconds=1)

    sal, rules = ruleset.salary, {r.rule_id: r for r in ruleset.rules}
    got: dict[str, Any] = {
        "rule ids": tuple(rules),
        "dedupe": us(ruleset.engine.dedupe_window),
        "allowed lateness": us(ruleset.engine.allowed_lateness),
        "salary": (us(sal.min_interval), us(sal.max_interval), sal.tolerance, sal.min_occurrences,
                   us(sal.memory)),  # fmt: skip
        "rules": [(r.rule_id, r.trigger, r.mode, _params(r)) for r in rules.values()],
    }  # fmt: skip
    day, minute = timedelta(days=1), timedelta(minutes=1)
    want: dict[str, Any] = {
        "rule ids": RULE_IDS,
        "dedupe": DEDUPE,
        "allowed lateness": 0,
        "salary": (MIN_I, MAX_I, Decimal(TOL_OVER) / TOL_UNDER, MIN_OCC, SAL_MEMORY),
        "rules": [
            ("big-deposit", "large_deposit", "live", {"min_amount": Decimal(MIN_AMOUNT // 100),
             "multiple": 5, "min_history": 3, "lookback": LOOKBACK // DAY_US * day,
             "kinds": sorted(DEPOSIT_KINDS)}),
            ("payroll-found", "salary_credit", "live", {"only_first": True}),
            ("payroll-stopped", "salary_missed", "live",
             {"grace": (MISSED - MAX_I) // DAY_US * day}),
            ("gone-quiet", "dormancy", "live", {"inactive": INACTIVE // DAY_US * day}),
            ("welcome-back", "reactivation", "live",
             {"inactive": INACTIVE // DAY_US * day, "memory": MEMORY // DAY_US * day}),
            ("honeymoon", "balance_milestone", "live",
             {"thresholds": [Decimal(m // 100) for m in MILESTONES],
              "onboarding": ONBOARDING // DAY_US * day}),
            ("wealth-curious", "window_threshold", "live",
             {"filter": {"type": "app", "action": "page_view", "product": "wealth"},
              "aggregate": "count", "window": WINDOW // DAY_US * day, "op": "gte", "value": 3,
              "customer_filter": {"segments": sorted(WEALTH_SEGMENTS),
                                  "tags_none": sorted(WEALTH_TAGS_NONE)}}),
            ("loan-abandoned", "absence", "live",
             {"within": WITHIN // 60_000_000 * minute,
              "start": {"type": "app", "action": "apply_start", "product": "loan"},
              "cancel": {"type": "app", "action": "apply_submit", "product": "loan"}}),
        ],
    }  # fmt: skip
    problems = [f"{k}: file {got[k]!r}, baseline {want[k]!r}" for k in want if got[k] != want[k]]
    paused = [r.rule_id for r in ruleset.rules if r.campaign in ruleset.paused_campaigns()]
    if paused:
        problems.append(f"rules of paused campaigns: {paused}")
    return problems


def _params(rule: Any) -> dict[str, Any]:
    """A rule's parameters as the baseline reads them: durations as timedeltas, lists sorted."""
    from pydantic import BaseModel

    meta = {"rule_id", "campaign", "description", "mode", "trigger"}
    params = {}
    for name in rule.model_dump(exclude_none=True).keys() - meta:
        value = getattr(rule, name)
        if isinstance(value, BaseModel):
            value = {k: sorted(v) if isinstance(v, list) else v
                     for k, v in value.model_dump(exclude_none=True).items()}  # fmt: skip
        params[name] = sorted(value) if name == "kinds" else value
    return params


def engine_candidates(
    payloads: list[bytes], profiles: list[bytes], until: datetime | None
) -> list[Cand]:
    """The project's decoder and engine over the same events and profiles, as `run` gives them."""
    from keymoment.connectors.customers import parse_profile

    by_id = {p.customer_id: p for p in (parse_profile(orjson.loads(line)) for line in profiles)}
    return plain_engine_candidates(payloads, until, RULES, by_id)


def profile_lines(customers: int, seed: int = 1) -> list[bytes]:
    """The generator's profiles as the customers file's lines (what bench_ratio writes)."""
    from keymoment.connectors.generator import Generator

    gen = Generator(seed=seed, customers=customers, days=240, activity=0.3)
    return [orjson.dumps(p) for p in gen.profiles()]


def timed(
    payloads: list[bytes], profiles: list[bytes], until_us: int | None
) -> tuple[float, float, list[Cand]]:
    """Wall and CPU seconds of one baseline run, GC off as the baseline's definition says."""
    return gc_off(run, payloads, profiles, until_us)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    problems = check_constants()
    if problems:
        raise SystemExit(
            "the baseline's constants are not the rules file's: " + "; ".join(problems)
        )
    payloads, until = generated(args.events, args.customers)
    profiles = profile_lines(args.customers)
    until_us = to_us(until.isoformat())
    wall, cpu, found = min(timed(payloads, profiles, until_us) for _ in range(args.repeat))
    n = len(payloads)
    print(f"baseline (eight rules): {n:,} events, {wall:.2f} s wall, {cpu:.2f} s CPU: "
          f"{n / cpu:,.0f}/CPU-s")  # fmt: skip
    expected = engine_candidates(payloads, profiles, until)
    same = sorted(found) == sorted(expected)
    fired = {rule: sum(1 for c in found if c[0] == rule) for rule in RULE_IDS}
    print(f"candidates: {len(found):,} ({', '.join(f'{r} {k:,}' for r, k in fired.items())}), "
          f"equal to the engine's: {same}")  # fmt: skip
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
