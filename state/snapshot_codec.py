"""Encode engine states for snapshot segments: msgpack (msgspec) instead of pickle, exact.

Why not pickle: a customer state is a few slotted objects holding about ten
`datetime`s, and pickle pays about 1.4 us per datetime and a Python
`__getstate__` call per object, about 19 us per customer on bench/four_rules.yaml;
msgspec writes datetimes in C (a msgpack timestamp), about 4 us per customer
(bench/bench_snapshot.py prints both, same run).

Generic, so a change of the state classes in triggers/ needs nothing here:

- an object with `__slots__` (every state class, `triggers.state.Slotted` or
  not) becomes an extension record of its class's `module:qualname` and its
  slot values in order; it is rebuilt with `cls.__new__` and the slots set
  (no `__init__`), from the module already imported under that name;
- msgpack has no tuple, and decodes arrays as lists except as dict keys
  (tuples there): a tuple (or NamedTuple) that is a slot value itself, or a
  value or item of a dict or list held in a slot, is tagged so it comes back
  as that type (containers of a slot are assumed to hold one type, as the
  typed states do: the first item decides, so one check per container);
- anything else msgpack cannot hold is pickled inside the record (a fallback,
  slow but exact).

tests/unit/test_snapshot_codec.py round-trips every rule type of
examples/rules.yaml byte for byte against pickle.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

import msgspec

_OBJECT, _TUPLE, _PICKLED = 1, 2, 3  # extension codes
_tags: dict[type, str] = {}
_classes: dict[str, Any] = {}  # tag -> class
_slot_names: dict[type, tuple[str, ...]] = {}


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


def _tupled(value: Any) -> Any:
    """A slot value with its tuples tagged (module docstring); else the value itself."""
    kind = type(value)
    if kind is dict:
        if value and isinstance(next(iter(value.values())), tuple):
            return {k: _tuple_ext(v) for k, v in value.items()}
    elif kind is list:
        if value and isinstance(value[0], tuple):
            return [_tuple_ext(v) for v in value]
    elif isinstance(value, tuple):
        return _tuple_ext(value)
    return value


def _tuple_ext(value: tuple) -> msgspec.msgpack.Ext:
    cls = type(value)
    tag = "" if cls is tuple else _tag(cls)
    return msgspec.msgpack.Ext(_TUPLE, _encoder.encode([tag, *value]))


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


def _enc_hook(obj: Any) -> Any:
    cls = type(obj)
    names = _slots(cls)
    if not names or hasattr(obj, "__dict__"):
        return msgspec.msgpack.Ext(_PICKLED, pickle.dumps(obj, protocol=5))
    values = [_tupled(getattr(obj, name)) for name in names]
    return msgspec.msgpack.Ext(_OBJECT, _encoder.encode([_tag(cls), *values]))


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _PICKLED:
        return pickle.loads(data)
    items = _decoder.decode(data)
    cls: Any = _class(items[0]) if items[0] else tuple
    if code == _TUPLE:
        return tuple(items[1:]) if cls is tuple else cls(*items[1:])
    if code != _OBJECT:
        raise CodecError(f"unknown record kind {code} in a snapshot")
    obj = cls.__new__(cls)
    for name, value in zip(_slots(cls), items[1:], strict=True):
        object.__setattr__(obj, name, value)
    return obj


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
encode: Callable[[Any], bytes] = _encoder.encode


def decode(data: bytes | memoryview) -> Any:
    """What `encode` wrote; a CodecError (one line) for anything else."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise CodecError(f"corrupt snapshot data ({exc})") from None
