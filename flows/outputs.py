"""The one way the flow writes dict records to any sink.

Every sink built by `keymoment.connectors.urls.sink_from_url` takes dict
records (offers, decision-log records, dead letters). Most are Bytewax
`DynamicSink`s and take the dicts as they are; the JSONL file sink is a
`FixedPartitionedSink` (so it can rewind on resume) and needs `(key, dict)`
pairs; the webhook sink can hand back its permanent failures as a stream.
`output()` hides those differences from the flow.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import DynamicSink, FixedPartitionedSink, Sink, StatelessSinkPartition


def output(step_id: str, records: Stream[dict], sink: Sink) -> Stream[dict] | None:
    """Write `records` to `sink`; for a webhook sink, return the stream of its dead letters.

    The webhook delivers inside a `flat_map_batch` step so that each 4xx
    comes back into the dataflow as a dead-letter record the flow merges
    into its dead-letter output (see docs/connectors.md); the step also
    ends in an output of its own, so delivery runs even when the caller
    drops that stream (each dead letter is logged regardless). Other sinks
    return None.
    """
    deliver = getattr(sink, "deliver_batch", None)
    if deliver is not None:
        dead = op.flat_map_batch(step_id, records, deliver)
        op.output(f"{step_id}-settled", dead, _Settled())  # a flow must end in an output
        return dead
    if isinstance(sink, FixedPartitionedSink):
        keyed = op.map(f"{step_id}-key", records, _with_empty_key)
        op.output(step_id, keyed, sink)
        return None
    op.output(step_id, records, sink)
    return None


def _with_empty_key(record: dict) -> tuple[str, dict]:
    return ("", record)


class _Ignore(StatelessSinkPartition[dict]):
    def write_batch(self, items: list[dict]) -> None:
        return


class _Settled(DynamicSink[dict]):
    """Terminates the webhook step: Bytewax refuses a flow whose steps lead to no output."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Ignore:
        return _Ignore()
