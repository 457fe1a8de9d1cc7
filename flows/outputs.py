"""The one way the flow writes dict records to any sink.

Every sink built by `keymoment.connectors.urls.sink_from_url` takes dict
records (offers, decision-log records, dead letters). Most are Bytewax
`DynamicSink`s and take the dicts as they are; the JSONL file sink is a
`FixedPartitionedSink` (so it can rewind on resume) and needs `(key, dict)`
pairs; the webhook sink delivers through a delivery stage of its own
(`keymoment.flows.delivery`) and hands back its failures as a stream of
dead letters. `output()` and `output_keyed()` hide those differences.

`output_each()` writes the records a function picks from each shard call
(the decision log's, a channel's offers): to a JSONL file as one chunk of
lines per call, serialised where the call was decided, instead of one
Bytewax item per record through three steps; to any other sink one by one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeGuard, TypeVar
from zlib import adler32, crc32

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import FixedPartitionedSink, Sink

from keymoment.connectors.files import JsonlFileSink, dumps_line

from .placement import SPREAD, shard_index

if TYPE_CHECKING:
    from keymoment.connectors.kafka import KafkaRecordSink

    from .delivery import StagedSink

Call = TypeVar("Call")  # what a shard call produced (a `ShardOutput`)

STAGE_KEYS = 16  # delivery keys of a stream that arrives unkeyed (each is one snapshot)


def output_keyed(
    step_id: str, records: Stream[tuple[str, dict]], sink: Sink, check_expiry: bool = True
) -> Stream[dict] | None:
    """Write records keyed by shard (offers); a webhook delivers them keyed so.

    Keeping the engine's shard keys means no offer crosses to another
    worker, and each key's snapshot holds the un-acknowledged offers of its
    shard. Returns the stream of dead letters for a webhook, else None.
    """
    if is_staged(sink):
        from .delivery import deliver

        return deliver(step_id, records, sink, check_expiry=check_expiry)
    if is_kafka(sink):
        op.output(step_id, records, keep_local(sink))
        return None
    return output(step_id, op.map(f"{step_id}-values", records, _value), sink)


def output(
    step_id: str, records: Stream[dict], sink: Sink, check_expiry: bool = True
) -> Stream[dict] | None:
    """Write `records` to `sink`; for a webhook sink, return the stream of its dead letters.

    The webhook delivers through its own stage (`keymoment.flows.delivery`:
    a failing gateway never stalls the flow) and its dead letters come back
    as a stream the flow merges into its dead-letter output (see
    docs/connectors.md). Unkeyed records are keyed by customer into
    `STAGE_KEYS` delivery keys. Other sinks return None.
    """
    if is_staged(sink):
        from .delivery import deliver

        keyed = op.map(f"{step_id}-key", records, _stage_key)
        return deliver(step_id, keyed, sink, check_expiry=check_expiry)
    if isinstance(sink, FixedPartitionedSink):
        keyed = op.map(f"{step_id}-key", records, _with_empty_key)
        op.output(step_id, keyed, sink)
        return None
    op.output(step_id, records, sink)
    return None


def output_each(
    step_id: str,
    calls: Stream[Call],
    records: Callable[[Call], list[dict]],
    sink: Sink,
    check_expiry: bool = True,
    lines: Callable[[Call], bytes] | None = None,
) -> Stream[dict] | None:
    """Write `records(call)` of each call to `sink`, in order (see the module docstring).

    `lines`: the same records as JSONL bytes, made without the dicts (the
    decision log: `ShardOutput.decision_lines`), used for a JSONL file. The
    file sink's step keeps `step_id` whichever way, so a recovery directory
    of either kind resumes the same sink partition.
    """
    if isinstance(sink, JsonlFileSink):
        chunk = _chunk(lines) if lines is not None else lambda call: _lines(records(call))
        op.output(step_id, op.filter_map(f"{step_id}-lines", calls, chunk), sink)
        return None
    if is_kafka(sink):  # calls keyed by shard: each written where it was made
        keyed = op.flat_map(f"{step_id}-records", calls, _keyed_records(records))
        op.output(step_id, keyed, keep_local(sink))
        return None
    return output(step_id, op.flat_map(f"{step_id}-records", calls, records), sink, check_expiry)


def is_staged(sink: object) -> TypeGuard[StagedSink]:
    """A sink with a delivery stage of its own (the webhook's: `keymoment.flows.delivery`)."""
    return callable(getattr(sink, "delivery_stage", None))


def is_kafka(sink: object) -> TypeGuard[KafkaRecordSink]:
    """Without importing the Kafka client: a flow that attaches no Kafka sink never loads it
    (45 ms of start-up), and then no sink can be one."""
    kafka = sys.modules.get("keymoment.connectors.kafka")
    return kafka is not None and isinstance(sink, kafka.KafkaRecordSink)


def keep_local(sink: KafkaRecordSink) -> KafkaRecordSink:
    """Route a shard's records to the sink partition of the worker that owns the shard.

    The sink gets `SPREAD` partitions; Bytewax builds partition `i` on worker
    `i % W` and a shard `s` lives on worker `s % W` (flows/placement.py), so a
    shard key routed to partition `s % SPREAD` is written where it was
    decided. Other keys (an unkeyed stream's "") go by their hash, as before.
    """
    sink.parts = SPREAD
    sink.route = _shard_part
    return sink


def _shard_part(key: str) -> int:
    index = shard_index(key)
    return index if index is not None else adler32(key.encode())


def _keyed_records(
    records: Callable[[Call], list[dict]],
) -> Callable[[Call], list[tuple[str, dict]]]:
    def keyed(call: Call) -> list[tuple[str, dict]]:
        key = call[0]  # type: ignore[index] # the shard calls are (shard key, output)
        return [(key, record) for record in records(call)]

    return keyed


def _chunk(lines: Callable[[Call], bytes]) -> Callable[[Call], tuple[str, bytes] | None]:
    def chunk(call: Call) -> tuple[str, bytes] | None:
        data = lines(call)
        return ("", data) if data else None

    return chunk


def _lines(records: list[dict]) -> tuple[str, bytes] | None:
    """One chunk of JSONL lines for the file sink (None: nothing to write)."""
    return ("", b"".join(map(dumps_line, records))) if records else None


def _with_empty_key(record: dict) -> tuple[str, dict]:
    return ("", record)


def _stage_key(record: dict) -> tuple[str, dict]:
    customer = str(record.get("customer_id") or "")
    return (f"d{crc32(customer.encode()) % STAGE_KEYS}", record)


def _value(item: tuple[str, dict]) -> dict:
    return item[1]
