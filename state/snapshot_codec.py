"""Encode engine states for snapshot segments: msgpack (msgspec) instead of pickle, exact.

Why not pickle: a customer state is a few slotted objects holding about ten
`datetime`s, and pickle pays about 1.4 us per datetime and a Python
`__getstate__` call per object, about 19 us per customer on bench/four_rules.yaml;
msgspec writes datetimes in C (a msgpack timestamp), about 4 us per customer
(bench/bench_snapshot.py prints both, same run).

Generic, so a change of the state classes in triggers/ needs nothing here:

- an object with `__slots__` (every state class, `triggers.state.Slotted` or
  not) becomes an extension record of its class's number and its slot values
  in order (the slots of its bases too); the encoded value carries the table
  of `module:qualname` per number once. It is rebuilt with `cls.__new__` and
  the slots set (no `__init__`), from the module already imported under that
  name;
- msgpack has no tuple, and decodes arrays as lists except as dict keys
  (tuples there): a tuple (or NamedTuple) that is a slot value itself, an
  item of such a tuple, or a value or item of a dict or list held in a slot,
  is tagged so it comes back as that type (containers of a slot are assumed
  to hold one type, as the typed states do: the first item decides, so one
  check per container);
- anything else msgpack cannot hold is pickled inside the record (a fallback,
  slow but exact).

tests/unit/test_snapshot_codec.py round-trips every rule type of
examples/rules.yaml byte for byte against pickle.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec

_OBJECT, _TUPLE, _PICKLED = 1, 2, 3  # extension codes
_PLAIN = frozenset({str, int, float, bool, type(None), datetime})  # slot values kept as they are
_tags: dict[type, str] = {}
_classes: dict[str, Any] = {}  # tag -> class
_slot_names: dict[type, tuple[str, ...]] = {}
_builders: dict[type, Callable[[list[Any]], Any]] = {}


class CodecError(ValueError):
    """A segment's bytes are not what this codec wrote."""


def _tag(cls: type) -> str:
    tag = _tags.get(cls)
    if tag is None:
        tag = _tags[cls] = f"{cls.__module__}:{cls.__qualname__}"
    return tag


def _class(tag: str) -> Any:
    cls = _classes.get(tag)
    if cls is None:
        module, _, name = tag.partition(":")
        found: Any = sys.modules.get(module)
        for part in name.split("."):
            found = getattr(found, part, None)
        if not isinstance(found, type):
            raise CodecError(f"snapshot names a class that is not loaded: {tag}")
        cls = _classes[tag] = found
    return cls


def _slots(cls: type) -> tuple[str, ...]:
    """Every slot of `cls` and its bases, base first; () for a class without slots only."""
    names = _slot_names.get(cls)
    if names is None:
        found: list[str] = []
        for klass in reversed(cls.__mro__):
            own = klass.__dict__.get("__slots__", ())
            found += [own] if isinstance(own, str) else list(own)
        names = _slot_names[cls] = tuple(n for n in found if n not in ("__dict__", "__weakref__"))
    return names


class Classes:
    """Class numbers kept across the segments of one chain, so `merge` can join their states
    without decoding them: numbers only grow, each segment stores the table as it stands."""

    def __init__(self, tags: list[str] | None = None) -> None:
        self.numbers: dict[type, int] = {tuple: 0}
        for tag in (tags or [""])[1:]:
            self.numbers[_class(tag)] = len(self.numbers)

    def tags(self) -> list[str]:
        """The table as a segment stores it (`Classes(tags)` numbers on from it)."""
        return ["" if cls is tuple else _tag(cls) for cls in self.numbers]


class _Writer:
    """One `encode` call: classes are numbered in the order met, their tags stored once."""

    def __init__(self, classes: Classes | None = None) -> None:
        self.classes = classes or Classes()
        self.numbers: dict[type, int] = self.classes.numbers
        self.layouts: dict[type, tuple[int, Callable[[Any], Any], bool]] = {}
        self.encoder = msgspec.msgpack.Encoder(enc_hook=self.hook)

    def number(self, cls: type) -> int:
        number = self.numbers.get(cls)
        if number is None:
            number = self.numbers[cls] = len(self.numbers)
        return number

    def hook(self, obj: Any) -> Any:
        """Hot: once per state object. attrgetter reads the slots in C; the loop is inline
        (no call per slot): 63 ms against 73 ms for a comprehension calling `tupled` per
        slot, on 10,000 changed customers."""
        cls = type(obj)
        layout = self.layouts.get(cls)
        if layout is None:
            names = _slots(cls)
            if not names or hasattr(obj, "__dict__"):
                return msgspec.msgpack.Ext(_PICKLED, pickle.dumps(obj, protocol=5))
            layout = self.layouts[cls] = (self.number(cls), attrgetter(*names), len(names) == 1)
        number, read, single = layout
        items = [number]
        for value in (read(obj),) if single else read(obj):
            kind = type(value)
            if kind in _PLAIN:
                pass
            elif kind is dict:
                for first in value.values():  # the first value decides (module docstring)
                    if isinstance(first, tuple):
                        value = self.tupled(value)
                    break
            elif kind is list:
                if value and isinstance(value[0], tuple):
                    value = self.tupled(value)
            else:
                value = self.tupled(value)
            items.append(value)
        return msgspec.msgpack.Ext(_OBJECT, self.encoder.encode(items))

    def tupled(self, value: Any) -> Any:
        """A slot value with its tuples tagged (module docstring); else the value itself."""
        kind = type(value)
        if kind is dict:
            if value and isinstance(next(iter(value.values())), tuple):
                return {k: self.tuple_ext(v) for k, v in value.items()}
        elif kind is list:
            if value and isinstance(value[0], tuple):
                return [self.tuple_ext(v) for v in value]
        elif isinstance(value, tuple):
            return self.tuple_ext(value)
        return value

    def tuple_ext(self, value: tuple) -> msgspec.msgpack.Ext:
        """A tuple's items are tagged in turn: a pair may hold a tuple key, `((2, "k"), at)`."""
        items = [v if type(v) in _PLAIN else self.tupled(v) for v in value]
        return msgspec.msgpack.Ext(_TUPLE, self.encoder.encode([self.number(type(value)), *items]))


class _Reader:
    """One `decode` call: the segment's class table, then its objects rebuilt."""

    def __init__(self, tags: list[str]) -> None:
        self.classes: list[Any] = [tuple] + [_class(tag) for tag in tags[1:]]
        self.builders = [_builder(cls) if _slots(cls) else None for cls in self.classes]
        self.decoder = msgspec.msgpack.Decoder(ext_hook=self.hook)

    def hook(self, code: int, data: memoryview) -> Any:
        """Hot: once per state object (about 5 per customer) on restore."""
        if code == _PICKLED:
            return pickle.loads(data)
        items = self.decoder.decode(data)
        number = items[0]
        if code == _OBJECT:
            build = self.builders[number]
            if build is None:
                raise CodecError(f"snapshot record of a class without slots: {number}")
            return build(items)
        if code == _TUPLE:
            return tuple(items[1:]) if number == 0 else self.classes[number](*items[1:])
        raise CodecError(f"unknown record kind {code} in a snapshot")


def _builder(cls: type) -> Callable[[list[Any]], Any]:
    """A function rebuilding a `cls` from its record's items, `[number, *slot values]`.

    Generated once per class, as `dataclasses` generates an `__init__`: one
    unpacking of the items (it checks their count) and one attribute store per
    slot cost 0.58 us for an eight-slot object, against 3.0 us for a loop of
    `object.__setattr__` calls (the restore's largest cost). No `__init__` runs;
    a class that defines its own `__setattr__` is set through `object.__setattr__`.
    """
    builder = _builders.get(cls)
    if builder is None:
        names = _slots(cls)  # identifiers: Python refuses any other slot name
        plain = cls.__setattr__ is object.__setattr__
        values = ", ".join(f"v{i}" for i in range(len(names)))
        lines = ["def build(items):", f"    _, {values}, = items", "    obj = new(cls)"]
        for i, name in enumerate(names):
            lines.append(f"    obj.{name} = v{i}" if plain else f"    put(obj, {name!r}, v{i})")
        lines.append("    return obj")
        namespace: dict[str, Any] = {"new": cls.__new__, "cls": cls, "put": object.__setattr__}
        exec("\n".join(lines), namespace)  # noqa: S102 - generated from the class's slots
        builder = _builders[cls] = namespace["build"]
    return builder


_outer = msgspec.msgpack.Decoder(tuple[list[str], bytes])


def encode(value: Any, classes: Classes | None = None) -> bytes:
    """`value` as msgpack, with the table of the classes its objects belong to (numbered
    on from `classes` when given)."""
    writer = _Writer(classes)
    payload = writer.encoder.encode(value)
    return msgspec.msgpack.encode((writer.classes.tags(), payload))


def decode(data: bytes | memoryview) -> Any:
    """What `encode` wrote; a CodecError (one line) for anything else."""
    return decode_table(data)[0]


def decode_table(data: bytes | memoryview) -> tuple[Any, list[str]]:
    """What `encode` wrote, and its class table (to number on from, `Classes(tags)`)."""
    try:
        tags, payload = _outer.decode(data)
        return _Reader(tags).decoder.decode(payload), tags
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
        raise CodecError(f"corrupt snapshot data ({exc})") from None
    except pickle.UnpicklingError as exc:
        raise CodecError(f"corrupt snapshot data ({exc})") from None


def _kept(code: int, data: memoryview) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, bytes(data))


_undecoded = msgspec.msgpack.Decoder(ext_hook=_kept)
# The mappings of a snapshot segment that `merge` joins by name: the customers' states,
# and the in-memory cap store's keys and offer records (flows/snapshots.py).
MAPPINGS = ("customers", "cap_keys", "cap_offers")


def merge(segments: list[bytes], keys: tuple[str, ...] = MAPPINGS) -> bytes:
    """A base and its parts, oldest first, as one base, without rebuilding a single state.

    Every state stays the msgpack bytes it was written as; each mapping of `keys`
    the base holds is the base's, each part's entries applied in order (None
    deletes), as `triggers.snapshots.restore` applies them; every other field is
    the last segment's. The class tables must be one numbering (`Classes`): each a
    prefix of the longest (a base forked from memory may number a class the parts
    after it do not hold yet, flows/snapshots.py).
    """
    try:
        tables, values = [], []
        for data in segments:
            tags, payload = _outer.decode(data)
            tables.append(tags)
            values.append(_undecoded.decode(payload))
        longest = max(tables, key=len)
        if any(table != longest[: len(table)] for table in tables):
            raise CodecError("the segments of a chain number their classes differently")
        merged = dict(values[-1])
        for key in keys:
            if key not in values[0]:
                continue
            entries = merged[key] = values[0][key]
            for value in values[1:]:
                for name, entry in value[key].items():
                    if entry is None:
                        entries.pop(name, None)
                    else:
                        entries[name] = entry
        return msgspec.msgpack.encode((longest, msgspec.msgpack.encode(merged)))
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError) as exc:
        raise CodecError(f"corrupt snapshot data ({exc})") from None
