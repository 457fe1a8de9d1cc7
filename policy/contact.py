"""The contact policy of the rules file: every candidate gets exactly one outcome and a reason.

Steps in the order of semantics section 4: suppression, holdout,
arbitration, ttl, channel choice with consent, quiet hours and caps. Every
step that needs no store decides at once, outage or not, so `control`,
`suppressed`, `arbitration_lost` and `no_channel` come out as in a
fault-free run. Only what needs the store fails closed: a reservation the
cap store cannot take (or a lookup in Redis-held lists) is parked in a
bounded queue, and `retry_pending(clock_at)` (called by the flow on a timer
tick, and at the start of each `decide`) decides it once the store answers,
or ends it `expired` / `cap_store_unavailable` when its ttl passes while it
waits. While the store is known to be down, reservations are parked without
calling it, so an outage never costs a timeout per batch."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keymoment.state.caps import CapStore, CapStoreUnavailable, Result
from keymoment.state.history import expect, token_of
from keymoment.state.memory_caps import MemoryCapStore
from keymoment.triggers.candidate import Candidate
from keymoment.triggers.events import CustomerProfile

from .arbitration import arbitrate
from .config import Campaign
from .decision import Decision, Outcome
from .holdout import Holdout
from .leads import LeadDesk
from .parking import EndWait, Parked, merged
from .planning import Plan, Planner, parse_tag, unplaced
from .shadow import decide_shadow
from .suppression import FileLists, Suppression
from .variants import VariantBook

Profiles = Mapping[str, CustomerProfile]
UNAVAILABLE = "cap_store_unavailable"
END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)
_NEVER = float("-inf")  # `_retry_at` while the store answers: no backoff
# decided before the variant draw (semantics 4.1-4.2): these customers are in no A/B arm
_UNASSIGNED = frozenset({"suppressed", "control"})

if TYPE_CHECKING:
    from keymoment.config import RulesFile


class RulesContactPolicy:
    """`ContactPolicy` for one rules file over one `CapStore` and some list sources."""

    def __init__(
        self,
        rules: RulesFile,
        store: CapStore,
        suppression: Suppression,
        *,
        clock: Callable[[], datetime],
        max_pending: int = 100_000,
        retry_interval: float = 0.5,
        max_retry_interval: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        end_wait: float | EndWait = 10.0,
    ) -> None:
        self.rules, self.store, self.suppression, self.clock = rules, store, suppression, clock
        # exactly the memory store (not a test double built on it): asked one channel first
        self._in_process = type(store) is MemoryCapStore
        self._use(rules)
        self.desk = LeadDesk(self)
        self.max_pending = max_pending
        self.retry_interval, self.max_retry_interval = retry_interval, max_retry_interval
        self.monotonic, self.sleep = monotonic, sleep
        self.end_wait = end_wait if isinstance(end_wait, EndWait) else EndWait(end_wait)
        self._pending: deque[Parked] = deque()
        self._pending_count = 0
        self._backoff = retry_interval
        self._retry_at = _NEVER
        self._counts = {
            "decided": 0,
            "parked": 0,
            "store_failures": 0,
            "expired_waiting": 0,
            "expired_at_end": 0,
            "pending_overflow": 0,
        }

    # -- the API the flow and the backtest call ---------------------------------------------
    def decide(
        self, candidates: Sequence[Candidate], profiles: Profiles, clock_at: datetime
    ) -> list[Decision]:
        """Final decisions for `candidates` (and for parked ones that could now be decided).

        Every step that needs no store decides at once, even during an outage or while
        older work is parked; only reservations (and Redis-held list lookups) wait.
        """
        out = self.retry_pending(clock_at) if self._pending else []
        if self.desk.waiting:  # leads waiting for a working day that began by now
            out += self._allocate(clock_at)
        if self._fused and not self._pending:
            if len(candidates) == 1:  # the usual engine call
                return out + self._one(candidates[0], profiles, clock_at)
            if not self.shadow and len({c.customer_id for c in candidates}) == len(candidates):
                for c in candidates:  # nobody competes (timers due together): one by one
                    out += self._one(c, profiles, clock_at)
                return out
        return out + self._run(list(candidates), profiles, clock_at, parked=False)

    def retry_pending(self, clock_at: datetime) -> list[Decision]:
        """Expire parked candidates past their ttl; retry the rest when the store may answer."""
        out = self._expire_waiting(clock_at)
        if not self._pending or not self._store_may_answer():
            return out + self._allocate(clock_at)
        items, self._pending, self._pending_count = self._pending, deque(), 0
        for item in merged(list(items)):
            if self._pending:  # failed again in this round: keep the order, do not hammer
                out += self._park(item.candidates, item.profiles, item.screened)
            elif item.screened:
                out += self._reserve(item.candidates, item.profiles, clock_at, parked=True)
            else:
                out += self._run(item.candidates, item.profiles, clock_at, parked=True)
        return out + self._allocate(clock_at)

    def _allocate(self, clock_at: datetime) -> list[Decision]:
        """The lead desk's allocations due by `clock_at`; they wait on while the store is down."""
        if not self.desk.waiting or not self._store_may_answer():
            return []
        try:
            return self.desk.allocate(clock_at)
        except CapStoreUnavailable:
            self._failed()
            return []

    def settle(self, clock_at: datetime, wait: float | None = None) -> list[Decision]:
        """End of input: every parked candidate is decided now, none is left behind.

        No later call will come to decide what still waits, so the store is retried
        (with its backoff) for up to `wait` seconds (default: the `end_wait` budget,
        10 s, which the shards of one process share) on the injected monotonic clock;
        whatever it still cannot take then ends `expired` / `cap_store_unavailable`,
        counted as `expired_at_end`.
        """
        out = self.retry_pending(clock_at)
        now = self.monotonic()
        deadline = self.end_wait.deadline(now) if wait is None else now + wait
        while self._pending and (now := self.monotonic()) < deadline:
            self.sleep(max(min(self._retry_at, deadline) - now, 0.05))
            out += self.retry_pending(clock_at)
        left = [c for item in self._pending for c in item.candidates]
        self._pending, self._pending_count = deque(), 0
        self._counts["expired_at_end"] += len(left)
        out += [self._final(c, "expired", UNAVAILABLE) for c in left]
        out += self._allocate(END_OF_TIME)  # waiting leads: as if no other lead came
        stuck, self.desk.waiting = self.desk.waiting, []  # the store could not answer for them
        return out + [self._final(x.candidate, "expired", UNAVAILABLE) for x in stuck]

    def update_rules(self, rules: RulesFile) -> None:
        """Roll out a new rules file: parked candidates, counters and the store carry over.

        List files are re-resolved from the new file; other list sources (Redis sets, a
        backtest's `FixedLists` copy of them) stay.
        """
        sources = self.suppression.sources
        others = [s for s in sources if type(s) is not FileLists]
        files = [s for s in sources if type(s) is FileLists]
        check_every = files[0].check_every if files else 5.0
        sources = [FileLists(rules.lists, check_every=check_every), *others] if files else others
        lists = {c.campaign_id: c.lists for c in rules.campaigns}
        self.rules, self.suppression = rules, Suppression(sources, lists)
        self._use(rules)

    def _use(self, rules: RulesFile) -> None:
        """What is built once per rules version: campaigns, planner, variants, holdouts."""
        self.campaigns = {c.campaign_id: c for c in rules.campaigns}
        self.holdouts = {c.campaign_id: Holdout(c.campaign_id, c.holdout) for c in rules.campaigns}
        self.planner = Planner(rules)
        self.variants = VariantBook(rules.campaigns)
        self.shadow = rules.shadow_rules()
        # the usual call (one candidate, a store and lists that always answer) takes `_one`
        self._fused = self._in_process and not self.suppression.remote

    def snapshot(self, store: bool = True) -> dict[str, Any]:
        """Plain data for a restart: the memory store's contents and the parked candidates.

        A Redis store keeps its reservations itself (idempotent by offer_id), so only
        the memory store is carried, and for Redis the token of the history in use, so a
        resumed process notices a server that came back empty (state/history.py).
        `store=False` leaves the memory store out: an incremental snapshot holds its
        changes instead (`MemoryCapStore.changes`, flows/snapshots.py).
        """
        memory = self.store.snapshot() if store and isinstance(self.store, MemoryCapStore) else None
        parked = [(list(p.candidates), dict(p.profiles), p.screened) for p in self._pending]
        leads, history = self.desk.snapshot(), token_of(self.store)
        return {"v": 1, "store": memory, "pending": parked, "leads": leads, "history": history}

    def restore(self, snap: dict[str, Any]) -> None:
        if snap.get("store") is not None and isinstance(self.store, MemoryCapStore):
            self.store.restore(snap["store"])
        self._pending = deque(Parked(c, p, s) for c, p, s in snap.get("pending", []))
        self._pending_count = sum(len(p.candidates) for p in self._pending)
        self.desk.restore(snap.get("leads", []))
        expect(self.store, snap.get("history"))

    @property
    def pending(self) -> int:
        """Candidates waiting for the store, and leads waiting for a working day."""
        return self._pending_count + len(self.desk.waiting)

    @property
    def counters(self) -> dict[str, int]:
        """Policy counts plus the store's and list sources' (connection errors, timeouts...)."""
        merged = dict(self._counts, pending=self._pending_count, **self.desk.counts)
        merged["leads_waiting"] = len(self.desk.waiting)
        for name, source in [
            ("store", self.store),
            *(("lists", s) for s in self.suppression.sources),
        ]:
            for key, value in getattr(source, "counters", {}).items():
                merged[f"{name}_{key}"] = merged.get(f"{name}_{key}", 0) + value
        return merged

    # -- the steps --------------------------------------------------------------------------
    def _run(
        self, candidates: list[Candidate], profiles: Profiles, clock_at: datetime, parked: bool
    ) -> list[Decision]:
        try:  # rules without lists (and no Redis-held ones) have nothing to look up
            listed = self._lookup(candidates) if self.suppression.asks else {}
        except CapStoreUnavailable:
            return self._park(candidates, profiles, screened=False)
        out, eligible, shadow = [], [], []
        for c in candidates:
            campaign = self.campaigns.get(c.campaign)
            if campaign is None:  # its rule was removed by a rules update while it waited
                out.append(self._final(c, "no_channel", "unknown_campaign"))
                continue
            held_by = listed.get(c.customer_id) if listed else None  # usually on no list
            name = self.suppression.first_list(campaign.campaign_id, held_by) if held_by else None
            held = name is None and self.holdouts[campaign.campaign_id].holds(c.customer_id)
            if c.rule_id in self.shadow:  # decided read-only, after the live ones (policy.shadow)
                shadow.append((c, f"suppressed:{name}" if name else "control" if held else None))
            elif name is not None:
                out.append(self._final(c, "suppressed", name))
            elif held:
                out.append(self._control(c, profiles.get(c.customer_id), clock_at))
            else:
                eligible.append(c)
        most = self.rules.policy.max_offers_per_event
        if len(eligible) > most:  # else nobody can lose (the usual one-candidate call)
            eligible, losers = arbitrate(eligible, self._campaign, most)
            out += [self._final(c, "arbitration_lost", winner) for c, winner in losers]
        out += self._reserve(eligible, profiles, clock_at, parked)
        if shadow:
            out += decide_shadow(self, shadow, eligible, profiles, clock_at)
        if len(out) < 2:  # one candidate (the usual engine call): already in order
            return out
        order = {id(c): i for i, c in enumerate(candidates)}
        return sorted(out, key=lambda d: order[id(d.candidate)])

    def _one(self, c: Candidate, profiles: Profiles, clock_at: datetime) -> list[Decision]:
        """`_run` of one candidate when nothing can fail, without its layers of lists.

        The usual engine call: one candidate, nothing parked, the in-process store and
        list files (which always answer), so nobody can lose arbitration. The same
        steps in the same order as `_run`, `_plans`, `_reserve` and `_ask` take for it
        (round 5); a shadow rule's candidate, or one of a campaign a rules update
        removed, takes `_run` itself. `decide` also takes it for each candidate of a
        call whose candidates are all of different customers (timers due at the same
        instant), with no shadow rules: no two then compete, and no step of one reads
        what another's writes (their cap keys differ; a lead's capacity keys are only
        touched by the desk, in the same order), so one by one decides what `_run`
        decides, in the same order.
        """
        campaign = self.campaigns.get(c.campaign)
        if campaign is None or c.rule_id in self.shadow:
            return self._run([c], profiles, clock_at, parked=False)
        customer_id = c.customer_id
        if self.suppression.asks and (
            name := self.suppression.first_in_files(c.campaign, customer_id)
        ):
            return [self._final(c, "suppressed", name)]
        profile = profiles.get(customer_id)
        if self.holdouts[c.campaign].holds(customer_id):
            return [self._control(c, profile, clock_at)]
        if clock_at - c.triggered_at > campaign.ttl:
            return [self._final(c, "expired", "ttl")]
        if c.campaign in self.variants.campaigns:
            campaign = self.variants.view(campaign, self.variants.assign(c.campaign, customer_id))
        plan = self.planner.plan(c, campaign, profile, clock_at, first_only=True)
        reservation = plan.reservation
        if reservation is None:
            if plan.human is None:
                return [self._unplaced(plan)]
            return self._answered(plan, None, profiles, clock_at)
        result = self.store.reserve(reservation)
        if result.tag is None and plan.partial and self.planner.complete(plan, profile, clock_at):
            result = self.store.reserve(plan.reservation)  # type: ignore[arg-type]  # complete() set it
        if plan.human is None or result.tag is not None:
            return [self._placed(plan, result)]
        return self._answered(plan, result, profiles, clock_at)

    def _lookup(self, candidates: list[Candidate]) -> dict[str, set[str]]:
        """Suppression lists; raises `CapStoreUnavailable` when Redis-held lists cannot answer."""
        if self.suppression.remote and not self._store_may_answer():
            raise CapStoreUnavailable("in backoff")
        try:
            return self.suppression.lookup([c.customer_id for c in candidates])
        except CapStoreUnavailable:
            self._failed()
            raise

    def _reserve(
        self, candidates: list[Candidate], profiles: Profiles, clock_at: datetime, parked: bool
    ) -> list[Decision]:
        """ttl, consent and quiet hours decide now; what needs a slot goes to the store or waits.

        While anything is parked, new reservations park behind it, so no candidate of a
        customer overtakes an earlier one of the same customer in the cap store.
        """
        out, plans = self._plans(candidates, profiles, clock_at, parked)
        if not plans:
            return out
        # in backoff after a failure (while the store answers, `_retry_at` is -inf: no clock read)
        if self._pending or (self._retry_at != _NEVER and not self._store_may_answer()):
            return out + self._park([p.candidate for p in plans], profiles, screened=True)
        asked = [p for p in plans if p.reservation is not None]
        try:
            results = self._ask(asked, profiles, clock_at)
        except CapStoreUnavailable:
            self._failed()
            return out + self._park([p.candidate for p in plans], profiles, screened=True)
        if self._retry_at != _NEVER:  # the first success after a failure resets the backoff
            self._succeeded()
        answers = iter(results)  # in the order of `asked`, which is `plans` in order
        for plan in plans:
            result = next(answers) if plan.reservation is not None else None
            # a plan without a human channel always has a reservation, hence a result
            if result is not None and (plan.human is None or result.tag is not None):
                out.append(self._placed(plan, result))
            else:
                out += self._answered(plan, result, profiles, clock_at)
        return out

    def _ask(self, asked: list[Plan], profiles: Profiles, clock_at: datetime) -> list[Result]:
        """The store's answers to the plans' requests, in order.

        The in-process memory store is asked for a plan's first channel alone: when it
        admits it (the usual case) the later channels' checks were never needed, and
        when it refuses, that left no trace, so asking again with every channel gives
        the answer one full request would have. Plans are asked one by one, in order,
        as `reserve_many` does. Any other store gets every option in one batch.
        """
        if not self._in_process:
            # `asked` holds only plans with a reservation (mypy cannot narrow inside the list)
            return self.store.reserve_many([p.reservation for p in asked])  # type: ignore[misc]
        results = []
        for plan in asked:
            result = self.store.reserve(plan.reservation)  # type: ignore[arg-type]  # as above
            profile = profiles.get(plan.candidate.customer_id)
            if (
                result.tag is None
                and plan.partial
                and self.planner.complete(plan, profile, clock_at)
            ):
                result = self.store.reserve(plan.reservation)  # type: ignore[arg-type]
            results.append(result)
        return results

    def _answered(
        self, plan: Plan, result: Result | None, profiles: Profiles, clock_at: datetime
    ) -> list[Decision]:
        """For a lead (nothing taken before its human channel) the desk's answer."""
        refusal = result.refused[0] if result is not None else None
        profile = profiles[plan.candidate.customer_id]
        try:
            return self.desk.route(plan, profile, clock_at, refusal)
        except CapStoreUnavailable:
            self._failed()
            return self._park([plan.candidate], profiles, screened=True)

    def _plans(
        self, candidates: list[Candidate], profiles: Profiles, clock_at: datetime, parked: bool
    ) -> tuple[list[Decision], list[Plan]]:
        """Decisions that need no store, and the plans that need a reservation."""
        out, plans = [], []
        for c in candidates:
            campaign = self.campaigns.get(c.campaign)
            if campaign is None:
                out.append(self._final(c, "no_channel", "unknown_campaign"))
                continue
            if clock_at - c.triggered_at > campaign.ttl:
                out.append(self._final(c, "expired", UNAVAILABLE if parked else "ttl"))
                continue
            if c.campaign in self.variants.campaigns:
                variant = self.variants.assign(c.campaign, c.customer_id)
                campaign = self.variants.view(campaign, variant)
            profile = profiles.get(c.customer_id)
            plan = self.planner.plan(c, campaign, profile, clock_at, first_only=self._in_process)
            if plan.reservation is not None or plan.human is not None:
                plans.append(plan)
            elif parked and plan.deferral_blocked:  # the wait pushed it past max_delay
                out.append(self._final(c, "expired", UNAVAILABLE))
            else:
                out.append(self._unplaced(plan))
        return out, plans

    def _control(
        self, c: Candidate, profile: CustomerProfile | None, clock_at: datetime
    ) -> Decision:
        """Logged as would-have-sent: the first channel consent and quiet hours allow; no slot."""
        plan = self.planner.plan(c, self._campaign(c), profile, clock_at, reserve=False)
        channel, send_at = plan.channels[0] if plan.channels else (None, None)
        return self._final(c, "control", "holdout", channel=channel, send_at=send_at)

    def _unplaced(self, plan: Plan) -> Decision:
        return self._final(plan.candidate, *unplaced(plan))

    def _placed(self, plan: Plan, result: Result) -> Decision:
        offer_id = plan.reservation.offer_id if plan.reservation is not None else None
        if result.tag is None:
            return self._final(plan.candidate, "capped", result.refused[0], offer_id=offer_id)
        if result.replayed or result.index is None:  # an earlier reservation's channel, send_at
            channel, send_at = parse_tag(result.tag)
            send_at = max(send_at, plan.candidate.triggered_at)  # a ms-only tag from an older run
            reason = "already_reserved" if result.replayed else _reason(send_at, plan.earliest)
        else:  # the option this plan asked for: its tag was made from this very send_at
            channel, send_at = plan.channels[result.index]
            reason = _reason(send_at, plan.earliest)
        return self._final(
            plan.candidate, "sent", reason, channel=channel, send_at=send_at, offer_id=offer_id
        )

    # -- fail closed ------------------------------------------------------------------------
    def _park(
        self, candidates: list[Candidate], profiles: Profiles, screened: bool
    ) -> list[Decision]:
        room = max(self.max_pending - self._pending_count, 0)
        keep, overflow = candidates[:room], candidates[room:]
        if keep:
            wanted = {c.customer_id for c in keep}
            self._pending.append(
                Parked(keep, {k: v for k, v in profiles.items() if k in wanted}, screened)
            )
            self._pending_count += len(keep)
            self._counts["parked"] += len(keep)
        self._counts["pending_overflow"] += len(overflow)
        return [self._final(c, "expired", "pending_queue_full") for c in overflow]

    def _expire_waiting(self, clock_at: datetime) -> list[Decision]:
        out: list[Decision] = []
        for item in self._pending:
            alive = []
            for c in item.candidates:
                campaign = self.campaigns.get(c.campaign)
                if campaign is not None and clock_at - c.triggered_at <= campaign.ttl:
                    alive.append(c)
                else:
                    out.append(self._final(c, "expired", UNAVAILABLE))
            item.candidates = alive
        self._pending = deque(item for item in self._pending if item.candidates)
        self._pending_count = sum(len(item.candidates) for item in self._pending)
        self._counts["expired_waiting"] += len(out)
        return out

    def _store_may_answer(self) -> bool:
        return self.monotonic() >= self._retry_at

    def _failed(self) -> None:
        self._counts["store_failures"] += 1
        self._retry_at = self.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_retry_interval)

    def _succeeded(self) -> None:
        self._backoff = self.retry_interval
        self._retry_at = _NEVER

    # -- decisions --------------------------------------------------------------------------
    def _campaign(self, c: Candidate) -> Campaign:
        return self.campaigns[c.campaign]

    def _final(
        self,
        c: Candidate,
        outcome: Outcome,
        reason: str,
        *,
        channel: str | None = None,
        send_at: datetime | None = None,
        offer_id: str | None = None,
        lead: Any = None,
    ) -> Decision:
        """The decision, with the offer id when a reservation already hashed it, and a lead's
        owner (`leads.LeadTag`)."""
        campaign = self.campaigns.get(c.campaign)
        self._counts["decided"] += 1
        variant = None
        if outcome not in _UNASSIGNED and c.campaign in self.variants.campaigns:
            variant = self.variants.assign(c.campaign, c.customer_id)
        offer_code = campaign.offer_code if campaign else ""
        if variant is not None and variant.offer_code is not None:
            offer_code = variant.offer_code
        # positional: a frozen dataclass built with keywords costs about twice as much
        # (fields in declaration order: see decision.py)
        return Decision(
            c,
            outcome,
            reason,
            c.campaign,
            offer_code,
            self.rules.version,
            self.clock(),
            channel,
            send_at,
            c.triggered_at + campaign.ttl if campaign else None,
            variant.id if variant else None,
            variant.attributes if variant else None,
            lead,
            offer_id,
        )


def _reason(send_at: datetime, earliest: datetime) -> str:
    return "deferred_quiet_hours" if send_at > earliest else "admitted"
