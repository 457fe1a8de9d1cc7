"""Property: a shard restored from the chain record of ANY epoch continues exactly.

The flow's pieces without Bytewax (flows/snapshots.py): one `Shard` (engine,
policy, rules versions with one to three switches at random times, maybe in
one epoch: a threshold, then a dormancy length, which re-reads every state,
then a reshaped rule and new salary settings) processes the generator's
stream batch by batch and takes an incremental snapshot (`Chain.snapshot`)
after random batches, with a random compaction ratio, so chains hold bases,
parts, switch segments and compactions in any mix. Then, as Bytewax may
resume from any epoch it kept, a fresh shard is restored from the record of
a random earlier epoch, while the segments the first shard wrote after that
epoch are still on disk (they must not leak into the restore), and processes
the rest: its decisions must be the uninterrupted shard's, record for record,
and its final state the same. The resumed shard snapshots on into the same
chain; a third shard restored from its last record holds its state exactly.
In some examples the compactions run in a child process, as in the flow, so
a merge is adopted whenever it happens to finish (a merge of the files, or a
base forked from memory after a switch segment), and a restore from an epoch
before that replays the switches.
"""

from __future__ import annotations

import functools
import math
import pickle
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_snapshot_codec import shape

from keymoment.connectors.generator import Generator
from keymoment.flows.replay import Replay
from keymoment.flows.shard import Shard, ShardOutput
from keymoment.flows.snapshots import Chain
from keymoment.flows.versioning import Versions
from keymoment.policy import build_policy
from keymoment.rollout.versions import RulesVersion, Switch
from keymoment.state import snapshot_codec as codec
from keymoment.state.segments import SegmentStore
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
GEN = Generator(seed=11, customers=60, days=150, activity=1.0, noise=0.01)
PAYLOADS = list(GEN.iter_bytes())
PROFILES = {p["customer_id"]: CustomerProfile.model_validate(p) for p in GEN.profiles()}
TIMES = sorted({orjson.loads(p)["occurred_at"] for p in PAYLOADS if b"occurred_at" in p})


@functools.cache
def world() -> dict:
    """Rules v7 and v8 and the stream cut into batches, once for every example."""
    out = Path(tempfile.mkdtemp(prefix="km-chain-"))
    shutil.copytree(EXAMPLE.parent / "lists", out / "lists")
    text = EXAMPLE.read_text()
    edits = [  # each version edits the one before
        [],
        [("min_amount: 50000", "min_amount: 20000")],  # a threshold: every state as it is
        [("inactive: 90d", "inactive: 60d")],  # a timer's length: every state re-read
        [("kinds: [cash_deposit, transfer_in]", "kinds: [cash_deposit]"),
         ("min_interval: 25d", "min_interval: 20d")],  # a reshaped rule, new salary series
    ]  # fmt: skip
    versions = []
    for n, pairs in enumerate(edits):
        for old, new in [("version: 7", f"version: {7 + n}"), *pairs]:
            assert old in text
            text = text.replace(old, new, 1)
        (out / f"v{7 + n}.yaml").write_text(text)
        versions.append(RulesVersion.read(str(out / f"v{7 + n}.yaml")))
        text = text.replace(f"version: {7 + n}", "version: 7", 1)
    (out / "events.jsonl").write_bytes(b"\n".join(PAYLOADS) + b"\n")
    v7 = versions[0]
    replay = Replay(
        v7.rules, PROFILES, build_policy(v7.rules), versions=Versions(v7), batch_size=97
    )
    batches = list(replay.batches([str(out / "events.jsonl")]))
    return {"versions": versions, "batches": batches, "until": GEN.until_at}


def new_shard(world: dict, *ats: datetime) -> Shard:
    """A shard on v7, switching to v8, v9, v10 in turn at `ats` (as many as given)."""
    v7, later = world["versions"][0], world["versions"][1:]
    versions = Versions(v7, [Switch(at, v) for at, v in zip(sorted(ats), later, strict=False)])
    return Shard(Engine(v7.rules), build_policy(v7.rules), PROFILES, None, versions)


def records(outs: list[ShardOutput]) -> list[bytes]:
    """Every decision in order; without `decided_at`, the policy's wall clock."""
    plain = [
        {k: v for k, v in r.items() if k != "decided_at"}
        for o in outs
        for r in o.decision_records()
    ]
    return [orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in plain]


def chain(root: Path) -> Chain:
    store = SegmentStore(root, fsync=False)
    return Chain(store, keep_seconds=math.inf, compact_ratio=RATIO[0], background=BACKGROUND[0])


RATIO, BACKGROUND = [1.0], [False]


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_resume_from_any_epoch_continues_exactly(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        resume_from_any_epoch(world(), Path(tmp), data)


def resume_from_any_epoch(world: dict, root: Path, data: st.DataObject) -> None:
    batches, n = world["batches"], len(world["batches"])
    switch_times = st.lists(st.sampled_from(TIMES), min_size=1, max_size=3)
    at = [datetime.fromisoformat(t) for t in data.draw(switch_times, label="switches")]
    RATIO[0] = data.draw(st.sampled_from([0.02, 0.2, 1.0, 1000.0]), label="compact ratio")
    BACKGROUND[0] = data.draw(st.booleans(), label="compactions in a child process")
    cuts = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=15), label="cuts"))
    resume_at = data.draw(st.sampled_from(cuts), label="resume epoch")
    first, snaps, stores, reference = new_shard(world, *at), {}, {}, []
    writer = chain(root)
    for i, batch in enumerate(batches):
        reference.append(first.process(batch))
        if i in cuts:
            snaps[i] = writer.snapshot(first)[0]
            stores[i] = cap_store(first)
    reference.append(first.finish(world["until"]))
    writer.settle()

    second, resumed, outs, last = new_shard(world, *at), chain(root), [], None
    resumed.restore(second, pickle.loads(snaps[resume_at]))
    assert cap_store(second) == stores[resume_at]  # the segments' cap-store changes, applied
    for i in range(resume_at + 1, n):
        outs.append(second.process(batches[i]))
        if i in cuts:
            last = resumed.snapshot(second)[0], customers(second)
    outs.append(second.finish(world["until"]))
    resumed.settle()
    assert records(outs) == records(reference[resume_at + 1 :])
    assert customers(second) == customers(first)
    if last is not None:  # the resumed shard's own chain restores its state too
        third = new_shard(world, *at)
        chain(root).restore(third, pickle.loads(last[0]))
        assert customers(third) == last[1]


def cap_store(shard: Shard) -> object:
    """The in-memory cap store's keys and offer records, as its whole snapshot holds them."""
    return shard.policy.snapshot()["store"]


def customers(shard: Shard) -> object:
    """Every customer's state, by id: the customers dict's order is not state (the heap is
    rebuilt sorted, a switch adapts each customer alone), and a customer evicted and back
    within one epoch keeps its place in a restore but moves to the end in the engine. A
    deferred switch is applied to every customer first (engine.Deferred)."""
    shard.engine.settle_all()  # in the rules in force: a switch reshapes each on first touch
    return shape(dict(sorted(shard.engine.customers.items())))


@pytest.mark.parametrize("background", [False, True], ids=["switch segments kept", "forked base"])
def test_resume_right_after_each_switch(tmp_path: Path, background: bool) -> None:
    """A snapshot every batch; the shard resumed from the record of the epoch of each switch
    (a kill -9 right after it) decides what the uninterrupted one decides. The first two
    switches (a threshold, a dormancy length) meet in one batch. Kept: compactions only by
    the ratio, never reached, so later segments replay earlier switches too; forked: each
    switch segment's base is written by a child."""
    w = world()
    batches, times = w["batches"], TIMES
    first_at = datetime.fromisoformat(times[len(times) * 4 // 10])
    ats = [first_at, first_at + timedelta(microseconds=1), datetime.fromisoformat(times[-50])]
    first, kept, reference = new_shard(w, *ats), {}, []
    writer = Chain(SegmentStore(tmp_path, fsync=False), math.inf, 1000.0, background=background)
    for i, batch in enumerate(batches):
        reference.append(first.process(batch))
        record = writer.snapshot(first)[0]
        if writer.names[-1].endswith(".switch"):
            kept[i] = record
    reference.append(first.finish(w["until"]))
    writer.settle()
    assert len(kept) == 2, kept
    for i, record in kept.items():
        second = new_shard(w, *ats)
        Chain(SegmentStore(tmp_path, fsync=False), math.inf).restore(second, pickle.loads(record))
        outs = [second.process(batch) for batch in batches[i + 1 :]]
        outs.append(second.finish(w["until"]))
        assert records(outs) == records(reference[i + 1 :])
        assert customers(second) == customers(first)


def test_a_chain_of_an_earlier_build_restores_and_rebases(tmp_path: Path) -> None:
    """Segments written before the cap store's changes were kept (the store whole in each
    one's rest, no `cap_keys`): the restore takes the store from the rest, and the next
    snapshot starts the chain again from a base rather than adding a part to it."""
    w = world()
    first = new_shard(w)
    for batch in w["batches"][: len(w["batches"]) // 2]:
        first.process(batch)
    assert cap_store(first)["keys"], "the stream must have reserved something by now"
    rest = first.snapshot()
    del rest["engine"]
    engine = first.engine
    old = {"watermark": engine.watermark, "customers": engine.customers, "rest": pickle.dumps(rest)}
    store = SegmentStore(tmp_path, fsync=False)
    name = store.write("base", codec.encode(old, codec.Classes()))
    second, resumed = new_shard(w), Chain(store, math.inf)
    resumed.restore(second, {"v": 1, "incremental": True, "chain": [name]})
    assert cap_store(second) == cap_store(first)
    assert customers(second) == customers(first)
    resumed.snapshot(second)
    assert resumed.names[0].endswith(".base") and resumed.names[0] != name
    assert len(resumed.names) == 1
