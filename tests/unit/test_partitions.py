"""Exact scale-out: any split of customers over partitions decides what the merged backtest does.

The flow's driver (`Stamper` + `Shard`, no Bytewax) runs with the
watermark as the minimum over partitions (flows/partitions.py). Hypothesis
draws how customers are split over partitions, how the partitions
interleave (any order that keeps each partition's own order), the batch
sizes, the shard count, and where each partition's end-of-file marker falls;
every decision, customer by customer and in order, must equal the
backtest's on the merged stream, and so must the dead letters (duplicates).
"""

from __future__ import annotations

import random
from array import array
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.flows.connect import policy_for
from keymoment.flows.partitions import FAR, PartitionClock, part_id, partition_of
from keymoment.flows.shard import Shard
from keymoment.flows.stamp import Stamper
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

RULES_PATH = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    gen = Generator(seed=11, customers=120, days=200, activity=1.0, noise=0.02)
    payloads = [p for p in gen.iter_bytes() if p.endswith(b"}")]  # whole records only
    profiles = {p["customer_id"]: CustomerProfile.model_validate(p) for p in gen.profiles()}
    rules = load_rules(RULES_PATH)
    return {"payloads": payloads, "profiles": profiles, "rules": rules, "until": gen.until_at}


def run(world: dict, streams: list[list[tuple[str, bytes | None]]], shards: int, parts: int):
    """Batches of items through the stamp step and `shards` shards; what they decided."""
    rules, profiles = world["rules"], world["profiles"]
    stamper = Stamper(shards, rules.engine.allowed_lateness, rules.engine.max_future,
                      world["until"], partitioned=parts > 1)  # fmt: skip
    group = [Shard(Engine(rules), policy_for(rules, None), profiles, None,
                   partitions=parts if parts > 1 else None) for _ in range(shards)]  # fmt: skip
    outputs = []
    for batch in streams:
        for shard, (_, piece) in zip(group, stamper(batch), strict=True):
            outputs.append(shard.process(piece))
    outputs += [shard.finish(world["until"]) for shard in group]
    return by_customer(outputs)


def by_customer(outputs: list) -> tuple[dict[str, list[dict]], list[str]]:
    decided: dict[str, list[dict]] = defaultdict(list)
    dead: list[str] = []
    for out in outputs:
        for record in out.decision_records():
            record.pop("decided_at")
            decided[record["customer_id"]].append(record)
        dead += [f"{d['reason']}@{d['source']}" for d in out.dead_letters]
    return dict(decided), sorted(dead)


def backtest(world: dict) -> tuple[dict[str, list[dict]], list[str]]:
    """The reference: the merged stream (here, the generator's own order) in one shard."""
    items: list[tuple[str, bytes | None]] = []
    for line, raw in enumerate(world["payloads"], 1):
        items.append((f"{_part_of(raw, 1)}:{line}", raw))
    return run(world, [items[i : i + 1000] for i in range(0, len(items), 1000)], 1, 1)


def _part_of(raw: bytes, parts: int, salt: int = 0) -> str:
    customer = orjson.loads(raw).get("customer_id", "")
    return f"p{random.Random(f'{salt}:{customer}').randrange(parts)}"


def interleave(world: dict, parts: int, salt: int, seed: int, max_batch: int) -> list[list]:
    """Each partition in its own order, picked at random; batches cut at random sizes."""
    queues: dict[str, list] = {f"p{k}": [] for k in range(parts)}
    for line, raw in enumerate(world["payloads"], 1):
        name = _part_of(raw, parts, salt)
        queues[name].append((f"{name}:{line}", raw))
    for name, queue in queues.items():
        queue.append((name, None))  # the end of the partition, as a file source sends it
    rng, merged, heads = random.Random(seed), [], dict.fromkeys(queues, 0)
    while heads:
        name = rng.choice(sorted(heads))
        for _ in range(rng.randint(1, 40)):  # a run of one partition, as a poll returns
            if heads[name] == len(queues[name]):
                del heads[name]
                break
            merged.append(queues[name][heads[name]])
            heads[name] += 1
    batches, at = [], 0
    while at < len(merged):
        size = rng.randint(1, max_batch)
        batches.append(merged[at : at + size])
        at += size
    return batches


@pytest.fixture(scope="module")
def reference(world: dict) -> tuple[dict, list]:
    return backtest(world)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure is printed, not shrunk:
)  # each example replays the whole stream, and shrinking a 2,000-event world takes minutes
@given(
    parts=st.integers(2, 6),
    salt=st.integers(0, 10**6),
    seed=st.integers(0, 10**6),
    shards=st.integers(1, 4),
    max_batch=st.sampled_from([1, 7, 100, 1000]),
)
def test_any_partitioning_decides_what_the_merged_backtest_decides(
    world, reference, parts, salt, seed, shards, max_batch
):
    decided, dead = run(world, interleave(world, parts, salt, seed, max_batch), shards, parts)
    expected, expected_dead = reference
    assert sum(map(len, expected.values())) > 100 and len(expected_dead) > 20
    assert decided.keys() == expected.keys()
    for customer, records in expected.items():
        assert decided[customer] == records, customer
    assert sorted(d.split("@")[0] for d in dead) == sorted(d.split("@")[0] for d in expected_dead)


def test_the_watermark_waits_for_every_partition_and_is_their_minimum():
    clock = PartitionClock(2)
    a, b = part_id("a"), part_id("b")
    t = [datetime.fromisoformat(f"2026-01-0{d}T00:00:00+00:00") for d in range(1, 8)]
    assert clock.rises([0, 1], [t[3], t[4]], [a, a]) == ([], [])  # b has not spoken
    assert clock.rises([0], [t[1]], [b]) == ([0], [t[1]])
    assert clock.rises([0, 1, 2], [t[2], t[5], t[6]], [b, b, b]) == ([0, 1], [t[2], t[4]])
    assert clock.rises([3], [FAR], [a]) == ([3], [t[6]])  # a ended: b alone holds time
    assert clock.rises([0], [FAR], [b]) == ([], [])  # all ended: the end of input decides


def test_an_idle_partition_stops_holding_time_back_and_rejoins_when_it_sends():
    wall = [0.0]
    stamper = Stamper(1, rules_lateness(), rules_lateness(), partitioned=True, idle_timeout=5,
                      monotonic=lambda: wall[0])  # fmt: skip
    clock = PartitionClock(2)

    def feed(*items: tuple[str, str]) -> list[datetime]:
        raws = [(f"{p}:1", _app(at)) for p, at in items]
        ((_, batch),) = stamper(raws)
        return clock.rises(batch.rise_pos, batch.rise_wm, batch.rise_part)[1]

    assert feed(("a", "01"), ("b", "02")) == [_t("01")]
    wall[0] = 3.0
    assert feed(("b", "03")) == []  # a is behind and not idle yet
    wall[0] = 9.0
    assert feed(("b", "04")) == [_t("04")]  # a silent for 9 s > 5 s: idle, b alone
    assert feed(("a", "02")) == []  # a is back, late; time never moves back
    assert feed(("b", "06"), ("a", "05")) == [_t("05")]
    assert partition_of("topic:3:1042") == "topic:3" and partition_of("x.jsonl:7") == "x.jsonl"


def rules_lateness() -> Any:
    from datetime import timedelta

    return timedelta(0)


def _t(day: str) -> datetime:
    return datetime.fromisoformat(f"2026-01-{day}T00:00:00+00:00")


def _app(day: str) -> bytes:
    return orjson.dumps({"type": "app", "event_id": f"e{day}", "customer_id": "c1",
                         "occurred_at": f"2026-01-{day}T00:00:00Z", "action": "login"})  # fmt: skip


@st.composite
def worker_batches(draw: st.DrawFn) -> tuple[int, list[list[tuple[list, list, list]]]]:
    """Batches of per-partition rises from 1-3 stamping workers, as `Stamper.stamp_parts`
    makes them: positions ascending, each partition's marks rising except after `FAR` (an
    idle or ended partition that speaks again starts from its new, maybe late, event)."""
    partitions = draw(st.integers(1, 4))
    ids = [part_id(f"p{i}") for i in range(partitions)]
    workers = []
    for _ in range(draw(st.integers(1, 3))):
        marks: dict[int, int] = {}
        batches = []
        for _ in range(draw(st.integers(1, 6))):
            pos, wm, part = [], [], []
            for i in range(draw(st.integers(1, 8))):
                p = draw(st.sampled_from(ids))
                if draw(st.integers(0, 9)) == 0:
                    marks[p] = -1  # FAR
                    pos.append(i), wm.append(FAR), part.append(p)
                    continue
                day = draw(st.integers(1, 28))
                if marks.get(p, 0) != -1 and day <= marks.get(p, 0):
                    continue  # not a rise of this partition
                marks[p] = day
                pos.append(i), part.append(p)
                wm.append(datetime.fromisoformat(f"2026-01-{day:02d}T00:00:00+00:00"))
            if pos:
                batches.append((pos, wm, part))
        workers.append(batches)
    return partitions, workers


@given(worker_batches(), st.lists(st.randoms(use_true_random=False), min_size=1, max_size=4))
@settings(max_examples=300, deadline=None)
def test_shards_of_a_process_share_answers_only_where_a_walk_would_give_the_same(
    drawn: tuple[int, list], orders: list[random.Random]
) -> None:
    """Several shards' clocks (one thread: they share `rises`' answers) each see every
    batch, in their own interleaving of the workers; each gets exactly what a clock of its
    own walking every batch gets (`_walk`, which no answer is kept for)."""
    partitions, workers = drawn
    seen = []  # each shard's order of the batches
    for order in orders:
        queues = [list(batches) for batches in workers]
        seen.append([])
        while any(queues):
            seen[-1].append(order.choice([q for q in queues if q]).pop(0))
    shared = [PartitionClock(partitions) for _ in orders]
    alone = [PartitionClock(partitions) for _ in orders]
    for step in range(len(seen[0])):  # the shards take turns, as in one worker
        for batches, clock, own in zip(seen, shared, alone, strict=True):
            assert clock.rises(*batches[step]) == own._walk(*batches[step])
            assert (clock.marks, clock.watermark) == (own.marks, own.watermark)


class Walks(PartitionClock):
    walks = 0

    def _walk(self, *batch: Any) -> Any:
        Walks.walks += 1
        return super()._walk(*batch)


def test_copies_of_one_batch_from_another_process_share_their_lists() -> None:
    """`unpack_shared`: what `Batch` rebuilds per receiving shard is one set of lists per
    batch, so their clocks find each other's answers (and equal bytes give equal lists)."""
    from keymoment.flows.rises import pack, unpack_shared

    t = [datetime.fromisoformat(f"2026-01-0{d}T00:00:00+00:00") for d in range(1, 4)]
    pos, wm = pack([0, 2, 5], t)
    parts = array("q", [part_id("a"), part_id("b"), part_id("a")]).tobytes()
    first = unpack_shared(bytes(pos), bytes(wm), bytes(parts))
    again = unpack_shared(bytes(pos), bytes(wm), bytes(parts))  # another copy's own bytes
    assert all(x is y for x, y in zip(first, again, strict=True))
    assert first[0] == [0, 2, 5] and list(first[1]) == t and first[1][1] == t[1]
    assert first[2] == [part_id("a"), part_id("b"), part_id("a")]
    shards = [Walks(2) for _ in range(4)]
    copies = [first, again, first, again]
    answers = {repr(shard.rises(*copy)) for shard, copy in zip(shards, copies, strict=True)}
    assert Walks.walks == 1 and answers == {repr(([2, 5], [t[0], t[1]]))}
    assert all(s.watermark == t[1] and s.marks is not shards[0].marks for s in shards[1:])
