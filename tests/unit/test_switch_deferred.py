"""Property: a switch deferred to each customer's first touch decides what the full pass decided.

`triggers.switch.switched` no longer reshapes every customer and rebuilds the heap in
the shard's call (engine.Deferred): a customer is reshaped on its next event or sent
offer, when an incremental snapshot writes it, or from the time its new timers might
come due (its old heap entries minus the most any deadline moves earlier). The
reference is the full pass itself (`_lag` answering None, the path a trigger with
unknown deadlines takes), uninterrupted. The shard under test runs the same stream
with one to three switches of random kinds at random times (timers shortened and
lengthened, a window, a follow-up, a shorter horizon so evictions come earlier, a
salary reset, a rule removed and one added, a threshold), takes incremental
snapshots after random batches and, at some of them, is thrown away and restored
from the chain or from a whole-shard snapshot (which keeps a pending deferral):
every decision, in order, and every final state must equal the reference's.
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_snapshot_chain import records
from test_snapshot_codec import shape

from keymoment.connectors.generator import Generator
from keymoment.flows.replay import Replay
from keymoment.flows.shard import Shard, ShardOutput
from keymoment.flows.snapshots import Chain
from keymoment.flows.versioning import Versions
from keymoment.policy import build_policy
from keymoment.rollout.diff import diff
from keymoment.rollout.versions import RulesVersion, Switch
from keymoment.state.segments import SegmentStore
from keymoment.triggers import switch
from keymoment.triggers.engine import LAG, Engine
from keymoment.triggers.events import CustomerProfile

# Quieter than test_snapshot_chain's bank, over more days: customers that sleep through a
# switch for weeks, or past the shorter horizon, are what a deferral must get right.
GEN = Generator(seed=5, customers=120, days=220, activity=0.25, noise=0.0)
PAYLOADS = list(GEN.iter_bytes())
PROFILES = {p["customer_id"]: CustomerProfile.model_validate(p) for p in GEN.profiles()}
TIMES = sorted({orjson.loads(p)["occurred_at"] for p in PAYLOADS if b"occurred_at" in p})
JOURNEYS = Path(__file__).resolve().parents[2] / "examples" / "journeys.yaml"
# Each kind of switch: (text, replacement, how many occurrences); a draw takes each at most
# once, and one of the two dormancy lengths.
EDITS = {
    "dormancy shorter": ("inactive: 90d", "inactive: 45d", 1),
    "dormancy longer": ("inactive: 90d", "inactive: 150d", 1),
    "salary grace shorter": ("grace: 10d", "grace: 1d", 1),
    "absence shorter": ("within: 30m", "within: 5m", 1),
    "window longer": ("window: 24h", "window: 72h", 1),
    "follow-up shorter": ("within: 3d", "within: 1d", 1),
    "horizon shorter": ("memory: 400d", "memory: 100d", 2),
    "salary series reset": ("min_interval: 25d", "min_interval: 20d", 1),
    "rule removed and added": ("rule_id: loan-abandoned", "rule_id: loan-left", 1),
    "threshold": ("min_amount: 50000", "min_amount: 20000", 1),
}


@functools.cache
def folder() -> Path:
    out = Path(tempfile.mkdtemp(prefix="km-deferred-"))
    shutil.copytree(JOURNEYS.parent / "lists", out / "lists")
    (out / "events.jsonl").write_bytes(b"\n".join(PAYLOADS) + b"\n")
    return out


@functools.cache
def versions(kinds: tuple[str, ...]) -> list[RulesVersion]:
    """The journeys example as version 1, then each edit on the one before."""
    text = JOURNEYS.read_text().replace("version: j1", "version: 1", 1)
    out = []
    for n, kind in enumerate(("", *kinds)):
        if kind:
            old, new, count = EDITS[kind]
            assert text.count(old) >= count, kind
            text = text.replace(old, new, count).replace(f"version: {n}", f"version: {n + 1}", 1)
        path = folder() / f"{'+'.join(kinds[:n]) or 'base'}.yaml"
        path.write_text(text)
        out.append(RulesVersion.read(str(path)))
    return out


@functools.cache
def batches() -> list:
    first = versions(())[0]
    replay = Replay(
        first.rules, PROFILES, build_policy(first.rules), versions=Versions(first), batch_size=60
    )
    return list(replay.batches([str(folder() / "events.jsonl")]))


def new_shard(kinds: tuple[str, ...], ats: tuple[datetime, ...]) -> Shard:
    first, *later = versions(kinds)
    schedule = Versions(first, [Switch(at, v) for at, v in zip(ats, later, strict=True)])
    return Shard(Engine(first.rules), build_policy(first.rules), PROFILES, None, schedule)


def customers(shard: Shard) -> object:
    """Every customer's state in the rules in force (a deferred switch applied to all)."""
    shard.engine.settle_all()
    return shape(dict(sorted(shard.engine.customers.items())))


@functools.cache
def full_pass(kinds: tuple[str, ...], ats: tuple[datetime, ...]) -> tuple[list[bytes], object]:
    """The reference: every switch a full pass in the shard's call, nothing interrupted."""
    with mock.patch.object(switch, "_lag", lambda *_: None):
        shard = new_shard(kinds, ats)
        outs = [shard.process(batch) for batch in batches()]
        outs.append(shard.finish(GEN.until_at))
        assert shard.engine._deferred is None
        return records(outs), customers(shard)


def kinds_drawn() -> st.SearchStrategy[tuple[str, ...]]:
    def one_dormancy(kinds: list[str]) -> bool:
        return not {"dormancy shorter", "dormancy longer"} <= set(kinds)

    names = st.lists(st.sampled_from(sorted(EDITS)), min_size=1, max_size=3, unique=True)
    return names.filter(one_dormancy).map(tuple)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_deferred_switch_decides_what_the_full_pass_decides(data: st.DataObject) -> None:
    kinds = data.draw(kinds_drawn(), label="switches")
    times = st.lists(st.sampled_from(TIMES), min_size=len(kinds), max_size=len(kinds))
    ats = tuple(sorted(datetime.fromisoformat(t) for t in data.draw(times, label="at")))
    n = len(batches())
    snaps = data.draw(st.sets(st.integers(0, n - 1), max_size=n), label="snapshots after")
    kind = st.sampled_from(["chain", "whole"])
    restores = data.draw(st.dictionaries(st.integers(0, n - 1), kind), label="restores")
    check(kinds, ats, snaps, restores)


QUARTER, HALF = TIMES[len(TIMES) // 4], TIMES[len(TIMES) // 2]


@pytest.mark.parametrize(
    ("kinds", "at", "restore"),
    [
        (("horizon shorter",), QUARTER, "whole"),
        (("horizon shorter",), QUARTER, "chain"),
        (("dormancy shorter",), HALF, "whole"),
        (("dormancy shorter", "absence shorter"), HALF, "chain"),
    ],
)
def test_restored_after_every_batch(kinds: tuple[str, ...], at: str, restore: str) -> None:
    """Customers asleep across the switch, the shard thrown away after every batch."""
    n = len(batches())
    ats = tuple(datetime.fromisoformat(at) for _ in kinds)
    check(kinds, ats, set(range(n)), dict.fromkeys(range(n), restore))


def check(
    kinds: tuple[str, ...], ats: tuple[datetime, ...], snaps: set[int], restores: dict[int, str]
) -> None:
    """The deferred shard, snapshotted after `snaps` and restored after `restores` (from
    the chain, or from a whole-shard snapshot that keeps a pending deferral), against
    the uninterrupted full pass."""
    expected, states = full_pass(kinds, ats)
    root = Path(tempfile.mkdtemp(prefix="km-deferred-chain-"))
    shard, chain = new_shard(kinds, ats), open_chain(root)
    outs: list[ShardOutput] = []
    for i, batch in enumerate(batches()):
        outs.append(shard.process(batch))
        how = restores.get(i)
        if how == "whole":
            whole = pickle.dumps(shard.snapshot(), protocol=5)
            shard, chain = new_shard(kinds, ats), open_chain(root)
            shard.restore(pickle.loads(whole))
        elif i in snaps or how == "chain":
            record = chain.snapshot(shard)[0]
            if how == "chain":
                shard, chain = new_shard(kinds, ats), open_chain(root)
                chain.restore(shard, pickle.loads(record))
    outs.append(shard.finish(GEN.until_at))
    shutil.rmtree(root)
    assert records(outs) == expected
    assert customers(shard) == states


def open_chain(root: Path) -> Chain:
    """Compactions only past a ratio never reached: switch segments stay to be replayed."""
    return Chain(SegmentStore(root, fsync=False), math.inf, compact_ratio=1000.0)


def test_the_switch_itself_reshapes_nobody() -> None:
    """What the property above does not see: the switch leaves every state to its first
    touch, and the heap holds one marker for the old one."""
    first, second = versions(("dormancy shorter",))
    shard = Shard(Engine(first.rules), build_policy(first.rules), PROFILES)
    for batch in batches()[: len(batches()) // 2]:
        shard.process(batch)
    old = shard.engine
    change = diff(first.rules, second.rules)
    new = switch.switched(old, second.rules, change.carry, change.reset_salary)
    assert new._deferred is not None and new._deferred.stale == set(old.customers)
    assert [entry[1:3] for entry in new._heap] == [("", LAG)]
    new.settle_all()
    assert new._deferred is None and len(new._heap) > 1


def test_a_shorter_horizon_evicts_a_quiet_customer_when_the_full_pass_would() -> None:
    """The deferral's lag covers a horizon that shrank, not only timer lengths.

    Only a 30-day window sets the horizon; the switch shortens it to one day and no timer
    length changes. A customer quiet since before the switch must be gone one day after
    its last event, as the full pass (its eviction check re-read at the switch) has it,
    not 30 days after (its old check, found by the old heap alone).
    """
    from test_triggers_support import app, at, ruleset

    def rules(window: str) -> object:
        return ruleset(
            {
                "rule_id": "w",
                "trigger": "window_threshold",
                "window": window,
                "value": 5,
                "filter": {"type": "app", "action": "page_view"},
            },  # fmt: skip
        )

    old, new = rules("30d"), rules("1d")
    held = {}
    for deferred in (False, True):
        engine = Engine(old)  # type: ignore[arg-type]
        engine.feed(app("e1", at(0), "page_view", customer="quiet"))
        engine.feed(app("e2", at(1), "page_view", customer="busy"))
        engine.advance(at(1, hours=1))
        full = mock.patch.object(switch, "_lag", return_value=None)  # the reference
        with full if not deferred else contextlib.nullcontext():
            engine = switch.switched(engine, new, {0: 0})  # type: ignore[arg-type]
        engine.advance(at(3))
        held[deferred] = set(engine.customers)
    assert held[False] == set()  # both were quiet for longer than the new horizon
    assert held[True] == held[False]


def test_a_customer_changed_before_the_switch_is_written_reshaped() -> None:
    """A part taken after a deferred switch holds its changed customers in the new shape.

    The customer's only event came before the switch (so it is in the part) and nothing
    touches it after: `changes` must reshape it before writing it, or the restore, which
    replays the switch only on the states before the part, takes its old dormancy deadline.
    """
    from test_triggers_support import app, at, ruleset

    from keymoment.triggers import snapshots

    old = ruleset({"rule_id": "d", "trigger": "dormancy", "inactive": "90d"})
    new = ruleset({"rule_id": "d", "trigger": "dormancy", "inactive": "45d"})
    engine = Engine(old)
    engine.dirty = set()
    base = engine.snapshot()
    engine.feed(app("e1", at(0), "login", customer="a"))
    engine.advance(at(1))
    engine = switch.switched(engine, new, {0: 0})
    part = snapshots.changes(engine)
    part["switches"] = [(old, new, {0: 0}, False)]  # as the driver names them
    restored = Engine(new)
    snapshots.restore(
        restored, pickle.loads(pickle.dumps(base)), [pickle.loads(pickle.dumps(part))]
    )
    fired = [(c.rule_id, c.triggered_at) for c in engine.advance(at(50))]
    assert fired == [("d", at(45))]  # the 45-day dormancy
    assert [(c.rule_id, c.triggered_at) for c in restored.advance(at(50))] == fired
