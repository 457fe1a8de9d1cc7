"""The snapshot codec (state/snapshot_codec.py) gives back every engine state exactly.

Every customer state the engine holds after the generator's stream under
examples/rules.yaml (every trigger type) is encoded and decoded; the result
has the same shape as the original, type by type (tuples, NamedTuples,
slotted classes, dict order, the one `UTC` tzinfo) and value by value. (Not
pickle bytes: pickle also records which equal datetimes were one object.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from keymoment.config import load_rules
from keymoment.connectors.generator import Generator
from keymoment.connectors.wire import DeadLetter, decode
from keymoment.state import snapshot_codec as codec
from keymoment.triggers.engine import Engine
from keymoment.triggers.events import CustomerProfile

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"


class Pair(NamedTuple):
    at: datetime
    name: str


class Base:
    __slots__ = ("a",)


class Derived(Base):
    __slots__ = ("b", "c")


class Plain:  # no slots: the pickle fallback
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.x == self.x


def test_every_state_of_the_generated_stream_round_trips_exactly() -> None:
    gen = Generator(seed=9, customers=120, days=240, activity=1.0, noise=0.01)
    profiles = {p["customer_id"]: CustomerProfile.model_validate(p) for p in gen.profiles()}
    engine = Engine(load_rules(RULES))
    for raw in gen.iter_bytes():
        event = decode(raw, "t")
        if type(event) is not DeadLetter:
            engine.feed(event, profiles.get(event.customer_id))
    kinds = {type(r).__name__ for s in engine.customers.values() for r in s.rule_states if r}
    assert len(kinds) >= 4, kinds  # the stream exercises several rule state classes
    back = codec.decode(codec.encode(engine.customers))
    assert back.keys() == engine.customers.keys()
    for cid, state in engine.customers.items():
        assert shape(back[cid]) == shape(state), cid


def shape(x: object) -> object:
    """Everything that makes two states behave alike: types, order, values, tzinfo identity."""
    kind = type(x)
    if isinstance(x, dict):
        return ("dict", [(shape(k), shape(v)) for k, v in x.items()])
    if isinstance(x, list | tuple):
        return (kind.__qualname__, [shape(v) for v in x])
    if isinstance(x, datetime):
        return ("dt", x.isoformat(), x.tzinfo is UTC)
    slots = [n for c in kind.__mro__ for n in c.__dict__.get("__slots__", ())]
    if slots:
        return (kind.__qualname__, [(n, shape(getattr(x, n))) for n in slots])
    assert x is None or kind in (int, str, float, bool), kind
    return (kind.__qualname__, x)


def test_tuples_named_tuples_inherited_slots_and_fallback() -> None:
    at = datetime(2026, 3, 1, 12, 30, 1, 7, tzinfo=UTC)
    obj = Derived()
    obj.a = {"k": Pair(at, "x")}
    obj.b = [(1, "y"), (2, "z")]
    obj.c = ((2, "key"), at)  # a pair holding a tuple (CustomerState.queued's one-timer shape)
    value = {"o": obj, "keys": {(1, "a"): at, 2: at}, "plain": Plain(3), None: 1.5}
    back = codec.decode(codec.encode(value))
    assert type(back["o"].a["k"]) is Pair and back["o"].a["k"] == Pair(at, "x")
    assert back["o"].b == [(1, "y"), (2, "z")] and type(back["o"].b[0]) is tuple
    assert back["o"].c == ((2, "key"), at) and type(back["o"].c[0]) is tuple
    assert back["o"].c[1].tzinfo is UTC
    assert back["keys"] == {(1, "a"): at, 2: at} and back["plain"] == Plain(3)


def test_garbage_is_one_codec_error() -> None:
    with pytest.raises(codec.CodecError, match="corrupt snapshot data"):
        codec.decode(b"\xc1\xff\x00")


def test_merge_joins_parts_as_restore_applies_them() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    classes = codec.Classes()
    one, two = Derived(), Derived()
    one.a, one.b, one.c = 1, [at], (at, "x")
    two.a, two.b, two.c = Pair(at, "p"), [], None
    base = codec.encode({"w": 1, "customers": {"a": one, "b": one, "c": two}}, classes)
    part = codec.encode({"w": 2, "customers": {"b": None, "d": two, "a": two}}, classes)
    merged = codec.decode(codec.merge([base, part]))
    assert merged["w"] == 2 and list(merged["customers"]) == ["a", "c", "d"]
    got = {k: shape(v) for k, v in merged["customers"].items()}
    assert got == {"a": shape(two), "c": shape(two), "d": shape(two)}


def test_merge_refuses_tables_that_disagree() -> None:
    obj = Derived()
    obj.a = obj.b = obj.c = None
    first = codec.encode({"customers": {"a": obj}}, codec.Classes())
    other = codec.Classes()
    other.numbers[Plain] = 1  # a different class under number 1
    pair = Pair(datetime(2026, 1, 1, tzinfo=UTC), "x")
    second = codec.encode({"customers": {"b": [pair]}}, other)
    with pytest.raises(codec.CodecError, match="number their classes differently"):
        codec.merge([first, second])
