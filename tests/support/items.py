"""Source batches as the `(position, payload)` pairs they stand for, for assertions."""

from __future__ import annotations

from collections.abc import Iterable

from keymoment.connectors.files import Item, Lines


def flat(item: Item) -> list[tuple[str, bytes | None]]:
    """A `Lines` item (a file read, a run of Kafka messages) as one pair per record."""
    return list(item) if isinstance(item, Lines) else [item]


def pairs(items: Iterable[Item]) -> list[tuple[str, bytes | None]]:
    """A partition's `next_batch()` (or several) as one pair per record, in order."""
    return [pair for item in items for pair in flat(item)]
