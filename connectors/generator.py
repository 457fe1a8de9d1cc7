"""A seeded synthetic stream of bank events for demos, benchmarks and tests.

Pure data generation: the same arguments give the same profiles and the same
events, byte for byte, on every machine. No clock, no I/O, no randomness
outside the seed.

    gen = Generator(seed=7, customers=1000, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=240)
    gen.profiles()            # iterator of reference-data dicts (CustomerProfile wire form)
    gen.iter_events()         # iterator of wire dicts, in occurred_at order
    gen.iter_events(limit=n)  # ... only the first n
    gen.iter_bytes()          # the same, as orjson bytes (what a Kafka/Redis source carries)
    gen.iter_live(now)        # the same sequence restamped: occurred_at = now() at each yield
    gen.until_at              # start_at + days: the backtest's --until
    to_bytes(record)          # one wire dict -> bytes

Conversion events depend on what the policy sent, so they are drawn from a
decision log: `connectors.conversions.conversion_events` (a known uplift).

`noise` (0.0..1.0) mixes bad records into the stream at that rate: an exact
repeat of the previous event (dropped by the engine as `duplicate`), a
record with a bad amount (`bad_amount`), one without `customer_id`
(`schema:customer_id`), and in `iter_bytes` also truncated JSON
(`malformed_json`).

The population is built so that every trigger type of `examples/rules.yaml`
fires: salary payers paid monthly by an employer (payroll or transfer_in),
some of whom stop (salary_credit, salary_missed); rare large cash deposits
(large_deposit); new customers funding their account in the first weeks
(balance_milestone); bursts of wealth page views, mostly by affluent segments
(window_threshold); loan applications started and sometimes not submitted
(absence); relationship managers and branches with uneven loads (`rm_id`,
`branch`: human-channel capacity binds); customers going quiet for 95-160
days and coming back, or never
(dormancy, reactivation); plus card payments, logins, interest and fees.

Customers are planned one 30-day period at a time from a small per-customer
state with its own splitmix64 generator, so memory stays at one period of
events whatever the length of the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

DAY = 86400
PERIOD_DAYS = 30
CHANNELS = ("app_push", "sms", "wecom", "call_center", "rm_task")
ZONES = ("Asia/Shanghai", "Europe/Prague", "Europe/London", "America/New_York", "Asia/Singapore")
SEGMENTS = (("mass", 0.60), ("mass_affluent", 0.25), ("affluent", 0.12), ("private", 0.03))
EMPLOYERS = 2000
_MASK = (1 << 64) - 1


class Rng:
    """splitmix64: 8 bytes of state per customer, where random.Random would hold 2.5 KB."""

    __slots__ = ("s",)

    def __init__(self, seed: int) -> None:
        self.s = seed & _MASK

    def bits(self) -> int:
        self.s = z = (self.s + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.bits() >> 11) * (1.0 / (1 << 53))

    def below(self, n: int) -> int:
        return self.bits() % n

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def chance(self, p: float) -> bool:
        return self.random() < p

    def poisson(self, lam: float) -> int:
        """Knuth's method: fine for the small rates used here."""
        limit, k, p = math.exp(-lam), 0, self.random()
        while p > limit:
            k += 1
            p *= self.random()
        return k


class Persona:
    """What one customer does; drawn once from the customer's own generator."""

    __slots__ = (
        "idx", "rng", "customer_id", "opened_day", "segment", "activity", "employer", "payroll",
        "salary", "pay_day", "stop_day", "quiet_from", "quiet_to", "balance", "fee", "interest_day",
        "wealth", "loan", "large_day", "seq",
    )  # fmt: skip

    def __init__(self, seed: int, idx: int, days: int, activity: float) -> None:
        rng = self.rng = Rng(seed * 0x100000001B3 + idx * 0x9E3779B97F4A7C15 + 1)
        self.idx, self.customer_id, self.seq = idx, f"C{idx:07d}", 0
        new = rng.chance(0.15)
        self.opened_day = rng.below(max(1, days - 100)) if new else -30 - rng.below(3000)
        self.segment = _pick(rng, SEGMENTS)
        self.activity = activity * rng.uniform(0.2, 1.8)
        self._salary(rng, days)
        self.quiet_from = self.quiet_to = -1
        if rng.chance(0.12):
            self.quiet_from = rng.below(max(1, days - 120)) + 5
            self.quiet_to = self.quiet_from + 95 + rng.below(66) if rng.chance(0.75) else days * 10
        self.balance = 0 if new else rng.below(2_000_000) * 100  # minor units
        self.fee = rng.chance(0.15)
        self.interest_day = rng.below(90) if rng.chance(0.6) else -1
        affluent = self.segment != "mass"
        self.wealth = rng.uniform(0.3, 1.2) if rng.chance(0.3 if affluent else 0.06) else 0.0
        self.loan = rng.uniform(0.2, 0.8) if rng.chance(0.06) else 0.0
        self.large_day = rng.below(days) if rng.chance(0.04) else -1

    def _salary(self, rng: Rng, days: int) -> None:
        self.employer = self.salary = None
        self.payroll, self.pay_day, self.stop_day = False, 0, days * 10
        if rng.chance(0.35):
            self.employer = f"EMP{rng.below(EMPLOYERS):05d}"
            self.payroll = rng.chance(0.4)
            self.salary = (300_000 + rng.below(2_700_000)) // 100 * 100
            self.pay_day = rng.below(PERIOD_DAYS)
            if rng.chance(0.15):
                self.stop_day = 60 + rng.below(max(1, days - 110))

    def active_on(self, day: int) -> bool:
        return day >= self.opened_day and not self.quiet_from <= day < self.quiet_to

    def profile(self, start_at: datetime) -> dict[str, Any]:
        rng = Rng(self.rng.s ^ 0x5DEECE66D)  # own stream: profiles never shift the events
        tags = [t for t, p in (("staff", 0.03), ("young", 0.2), ("senior", 0.15)) if rng.chance(p)]
        if self.employer:
            tags.append("payroll")
        consent = {c: rng.chance(0.85 if c == "app_push" else 0.7) for c in CHANNELS}
        opened_at = start_at + timedelta(days=self.opened_day, hours=9 + rng.below(8))
        return {
            "customer_id": self.customer_id,
            "opened_at": _iso(opened_at),
            "timezone": ZONES[rng.below(len(ZONES))],
            "segment": self.segment,
            "tags": tags,
            "consent": consent,
            **_relationship(Rng(self.rng.s ^ 0x2545F4914F6CDD1D)),
        }


# Branches and their RMs carry uneven loads (a few busy RMs, so capacity binds); one
# customer in ten has no RM and is served by the branch pool. Drawn from a stream of
# its own, so adding RMs changed no other field of any profile.
BRANCHES = (
    ("B01", 0.35), ("B02", 0.25), ("B03", 0.15), ("B04", 0.10), ("B05", 0.10), ("B06", 0.05),
)  # fmt: skip
RM_LOADS = (("1", 0.6), ("2", 0.3), ("3", 0.1))


def _relationship(rng: Rng) -> dict[str, str]:
    branch = _pick(rng, BRANCHES)
    if rng.chance(0.1):
        return {"branch": branch}
    return {"branch": branch, "rm_id": f"RM-{branch}-{_pick(rng, RM_LOADS)}"}


def _pick(rng: Rng, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def to_bytes(record: dict[str, Any]) -> bytes:
    """One wire dict as the bytes a source would carry."""
    return orjson.dumps(record)


# A planned event: (second since start, customer index, sequence, builder args).
Planned = tuple[int, int, int, tuple[Any, ...]]


class Generator:
    """The seeded population and its event stream (see the module docstring)."""

    def __init__(
        self,
        seed: int = 0,
        customers: int = 1000,
        start_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        days: int = 240,
        activity: float = 1.0,
        noise: float = 0.0,
    ) -> None:
        if start_at.utcoffset() is None:
            raise ValueError("start_at must be timezone-aware")
        self.seed, self.customers, self.days = seed, customers, days
        self.start_at = start_at.astimezone(UTC)
        self.activity, self.noise = activity, noise

    @property
    def until_at(self) -> datetime:
        return self.start_at + timedelta(days=self.days)

    def _personas(self) -> list[Persona]:
        return [Persona(self.seed, i, self.days, self.activity) for i in range(self.customers)]

    def profiles(self) -> Iterator[dict[str, Any]]:
        for i in range(self.customers):
            yield Persona(self.seed, i, self.days, self.activity).profile(self.start_at)

    def iter_events(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Wire dicts in occurred_at order (ties: customer, then plan order)."""
        stream = self._records()
        for n, record in enumerate(stream):
            if limit is not None and n >= limit:
                return
            yield record

    def iter_bytes(self, limit: int | None = None) -> Iterator[bytes]:
        broken = Rng(self.seed ^ 0xB17E5)
        for record in self.iter_events(limit):
            data = orjson.dumps(record)
            if self.noise and broken.chance(self.noise / 4):
                data = data[: len(data) // 2]
            yield data

    def iter_live(self, now: Callable[[], datetime], limit: int | None = None) -> Iterator[dict]:
        """The same sequence with `occurred_at` = `now()` at each yield, for a live demo."""
        for record in self.iter_events(limit):
            yield {**record, "occurred_at": _iso(now().astimezone(UTC))}

    def _records(self) -> Iterator[dict[str, Any]]:
        personas = self._personas()
        noise = Rng(self.seed ^ 0x4015E) if self.noise else None
        carry: list[Planned] = []
        for period in range(math.ceil(self.days / PERIOD_DAYS)):
            first = period * PERIOD_DAYS
            last = min(first + PERIOD_DAYS, self.days)
            planned = carry
            for persona in personas:
                _plan_period(persona, first, last, planned)
            planned.sort()
            end = last * DAY
            cut = next((i for i, p in enumerate(planned) if p[0] >= end), len(planned))
            carry = planned[cut:] if last < self.days else []
            for planned_event in planned[:cut]:
                record = self._build(personas[planned_event[1]], planned_event)
                yield record
                if noise is not None and noise.chance(self.noise):
                    yield _spoil(noise, record)

    def _build(self, persona: Persona, planned: Planned) -> dict[str, Any]:
        at, _, seq, args = planned
        record: dict[str, Any] = {
            "type": args[0],
            "event_id": f"E{persona.idx}-{seq}",
            "customer_id": persona.customer_id,
            "occurred_at": _iso(self.start_at + timedelta(seconds=at)),
        }
        if args[0] == "app":
            _, action, product, page = args
            record["action"] = action
            if product:
                record["product"], record["page"] = product, page
            return record
        _, direction, kind, minor, counterparty = args
        persona.balance += minor if direction == "credit" else -minor
        record.update(
            account_id=f"AC{persona.idx}",
            direction=direction,
            kind=kind,
            amount=_money(minor),
            balance_after=_money(persona.balance),
        )
        if counterparty:
            record["counterparty"] = counterparty
        return record


def _spoil(rng: Rng, record: dict[str, Any]) -> dict[str, Any]:
    """One bad record: a repeat, a bad amount or a missing customer id."""
    roll = rng.below(3)
    if roll == 0:
        return dict(record)
    if roll == 1 and record["type"] == "transaction":
        return {**record, "event_id": record["event_id"] + "x", "amount": "-1.00"}
    return {k: v for k, v in record.items() if k != "customer_id"}


def _plan_period(p: Persona, first: int, last: int, out: list[Planned]) -> None:
    """Append this customer's events with day in [first, last) to `out`."""
    rng, span = p.rng, last - first
    scale = span / PERIOD_DAYS

    def add(day: float, *args: Any) -> None:
        at = int(day * DAY)
        if first * DAY <= at and day >= p.opened_day:
            p.seq += 1
            out.append((at, p.idx, p.seq, args))

    def active_times(rate: float) -> Iterator[float]:
        for _ in range(rng.poisson(rate * p.activity * scale)):
            day = first + rng.uniform(0, span)
            if p.active_on(int(day)):
                yield day

    _plan_bank(p, rng, first, last, add)
    if first <= p.opened_day < last:
        _plan_onboarding(p, rng, add)
    for day in active_times(1.0):
        add(day, "transaction", "debit", "card_payment", 1000 + rng.below(40_000), None)
    for day in active_times(0.25):
        add(day, "transaction", "credit", "cash_deposit", 50_000 + rng.below(450_000), None)
    for day in active_times(0.8):
        add(day, "app", "login", None, None)
    for day in active_times(p.wealth):
        _plan_wealth_burst(rng, day, add)
    for day in active_times(p.loan):
        _plan_loan(rng, day, add)
    if first <= p.large_day < last and p.active_on(p.large_day):
        amount = 5_000_000 + rng.below(25_000_000)
        add(
            p.large_day + rng.uniform(0.3, 0.7),
            "transaction",
            "credit",
            "cash_deposit",
            amount,
            None,
        )


def _plan_bank(p: Persona, rng: Rng, first: int, last: int, add: Callable[..., None]) -> None:
    """Salary, interest and fees: postings that are not customer activity."""
    if p.employer and p.salary is not None and first + p.pay_day < min(last, p.stop_day):
        day = first + p.pay_day + rng.uniform(-2, 2)
        amount = int(p.salary * rng.uniform(0.95, 1.05))
        kind = "payroll" if p.payroll else "transfer_in"
        add(max(day, first), "transaction", "credit", kind, amount, p.employer)
    if p.interest_day >= 0:
        for day in range(first, last):
            if day % 90 == p.interest_day:
                add(day + 0.01, "transaction", "credit", "interest", 100 + rng.below(5000), None)
    if p.fee:
        add(first + 0.02, "transaction", "debit", "fee", 500 + rng.below(2000), None)


def _plan_onboarding(p: Persona, rng: Rng, add: Callable[..., None]) -> None:
    """A new customer funds the account over the first weeks, crossing balance milestones."""
    for _ in range(1 + rng.below(4)):
        amount = 50_000 + rng.below(3_000_000)
        add(
            p.opened_day + rng.uniform(0.1, 40),
            "transaction",
            "credit",
            "transfer_in",
            amount,
            None,
        )


def _plan_wealth_burst(rng: Rng, day: float, add: Callable[..., None]) -> None:
    """2-5 wealth page views within a few hours: 3 or more make a wealth-curious lead."""
    for _ in range(2 + rng.below(4)):
        view = day + rng.uniform(0, 3 / 24)
        add(view, "app", "page_view", "wealth", f"/wealth/funds/{rng.below(40)}")


def _plan_loan(rng: Rng, day: float, add: Callable[..., None]) -> None:
    """A loan application; a little over half are submitted within 30 minutes."""
    add(day, "app", "apply_start", "loan", "/loan/apply")
    if rng.chance(0.55):
        add(day + rng.uniform(2, 25) / 1440, "app", "apply_submit", "loan", "/loan/apply/done")
    elif rng.chance(0.3):
        add(day + rng.uniform(40, 180) / 1440, "app", "apply_submit", "loan", "/loan/apply/done")
