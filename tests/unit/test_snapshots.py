"""Incremental snapshots: base + parts restore exactly the engine that never stopped.

A Hypothesis test replays the generator's stream (every trigger type of
examples/rules.yaml) through one engine; a second engine takes a full
snapshot at one point, parts at random later points, and at random points is
thrown away and rebuilt from the pickled base and parts. Its candidates, in
order, and its final state must be the uninterrupted engine's.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.triggers import snapshots
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


@pytest.fixture(scope="module")
def stream():  # noqa: ANN201
    gen = Generator(seed=5, customers=150, days=240, activity=1.0, noise=0.01)
    profiles = {p["customer_id"]: CustomerProfile.model_validate(p) for p in gen.profiles()}
    events = [
        e for e in (decode(raw, "t") for raw in gen.iter_bytes()) if type(e) is not DeadLetter
    ]
    rules = load_rules(RULES)
    reference, engine = [], Engine(rules)
    for event in events:
        reference.append(engine.feed(event, profiles.get(event.customer_id)).candidates)
    reference.append(engine.advance(gen.until_at))
    return rules, profiles, events, gen.until_at, reference, per_customer(engine)


def per_customer(engine: Engine) -> dict[str, bytes]:
    return {cid: pickle.dumps(state) for cid, state in engine.customers.items()}


def keyed(batches: list) -> list:
    return [[(c.rule_id, c.customer_id, c.event_id, c.triggered_at) for c in b] for b in batches]


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_base_and_parts_restore_the_uninterrupted_engine(stream, data):
    rules, profiles, events, until, reference, final = stream
    n = len(events)
    base_at = data.draw(st.integers(0, n // 2), label="base")
    cuts = sorted(data.draw(st.sets(st.integers(base_at + 1, n), max_size=12), label="parts"))
    crashes = (
        set(data.draw(st.lists(st.sampled_from(cuts), max_size=4), label="crashes"))
        if cuts
        else set()
    )
    engine, got = Engine(rules), []
    base, parts = None, []
    for i, event in enumerate(events):
        if i == base_at:
            base = pickle.dumps(engine.snapshot())
            snapshots.changes(engine)  # parts count from the base
        if i in cuts:
            parts.append(pickle.dumps(snapshots.changes(engine)))
            if i in crashes:
                engine = Engine(rules)
                snapshots.restore(engine, pickle.loads(base), map(pickle.loads, parts))
        got.append(engine.feed(event, profiles.get(event.customer_id)).candidates)
    got.append(engine.advance(until))
    assert keyed(got) == keyed(reference)
    assert per_customer(engine) == final


def test_a_part_holds_only_the_customers_that_changed(stream):
    rules, profiles, events, *_ = stream
    engine = Engine(rules)
    for event in events[:2000]:
        engine.feed(event, profiles.get(event.customer_id))
    snapshots.changes(engine)
    touched = {e.customer_id for e in events[2000:2010]}
    for event in events[2000:2010]:
        engine.feed(event, profiles.get(event.customer_id))
    part = snapshots.changes(engine)
    assert touched <= part["customers"].keys()
    assert len(part["customers"]) < len(engine.customers) / 2
    assert snapshots.changes(engine)["customers"] == {}
