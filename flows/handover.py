"""A batch's decoded events, packed for the trip to another process.

With several processes, the stamp step (`flows.stamp`) decodes every event of
its input and hands each shard that lives in another process its events
through Bytewax, which pickles them. Those events used to travel as their
raw JSON payloads and were decoded again on arrival: the whole validating
decode, one message at a time, about 3.6-3.8 us per event (measured on the
generator's stream), for events that had passed it once already. Here they
travel as what the stamp step made of them: msgspec's MessagePack of the
event structs, one array per event type and one byte per event for the
order, encoded and decoded in C (0.5-0.6 plus 0.8 us per event, measured in
the same run; the batch's whole trip, `bench/bench_crossing.py --handover-only`:
1.73 against 4.43 us per crossing event). A shard then gets exactly the objects
the stamp step built,
as a shard in the stamp step's own process does: field for field, times in
the one `datetime.UTC`.

Within a process nothing is packed: a batch keeps its list of events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress

import msgspec

from keymoment.triggers.events import AppEvent, ConversionEvent, Event, TransactionEvent

_TYPES = (TransactionEvent, AppEvent, ConversionEvent)
_KIND: dict[type, int] = {cls: kind for kind, cls in enumerate(_TYPES)}
_ENCODE = msgspec.msgpack.Encoder().encode
# One typed decoder per event type: the structs are not tagged (their `type` field is
# a plain default), so a union of the three cannot be decoded in one array.
_DECODE: tuple[Callable[[bytes], Sequence[Event]], ...] = (
    msgspec.msgpack.Decoder(list[TransactionEvent]).decode,
    msgspec.msgpack.Decoder(list[AppEvent]).decode,
    msgspec.msgpack.Decoder(list[ConversionEvent]).decode,
)

Packed = tuple[bytes, tuple[bytes, ...]]  # each event's type index, then each type's array


def pack_events(events: Sequence[Event]) -> Packed:
    """The events as one type byte each and one MessagePack array per event type."""
    kinds = bytes(map(_KIND.__getitem__, map(type, events)))
    columns = (compress(events, map(kind.__eq__, kinds)) for kind in range(len(_TYPES)))
    return kinds, tuple(_ENCODE(list(column)) for column in columns)


def unpack_events(packed: Packed) -> list[Event]:
    """What `pack_events` packed, equal and in order."""
    kinds, arrays = packed
    takes = [iter(decode(array)).__next__ for decode, array in zip(_DECODE, arrays, strict=True)]
    return [takes[kind]() for kind in kinds]
