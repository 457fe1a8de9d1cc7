"""The stamp step's batches: file lines as `Lines`, positions, the hand-over between processes."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import orjson
from hypothesis import given
from hypothesis import strategies as st

from keymoment.config import load_rules
from keymoment.connectors.files import JsonlReader, Lines, records_in
from keymoment.flows.dataflow import keeps_balances
from keymoment.flows.handover import pack_events, unpack_events
from keymoment.flows.settings import FlowSettings
from keymoment.flows.stamp import Accepted, Batch, Stamper
from keymoment.triggers.events import (
    MAX_AMOUNT_MINOR,
    TRANSACTION_KINDS,
    Action,
    AppEvent,
    ConversionEvent,
    Initiator,
    TransactionEvent,
)

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
FOUR = Path(__file__).resolve().parents[2] / "bench" / "four_rules.yaml"


def _tx(i: int) -> bytes:
    return orjson.dumps(
        {
            "type": "transaction",
            "event_id": f"e{i}",
            "customer_id": f"c{i % 3}",
            "occurred_at": f"2026-01-01T08:00:{i:02d}Z",
            "account_id": "a1",
            "direction": "credit",
            "amount": "10.00",
            "kind": "cash_deposit",
            "balance_after": "1234.50",
        }
    )


def _stamper(balances: bool) -> Stamper:
    return Stamper(2, timedelta(0), timedelta(minutes=5), balances=balances)


def test_a_rebuilt_batch_holds_the_events_as_the_stamp_step_decoded_them() -> None:
    """Across a process boundary an event arrives as decoded, balance_after only if kept."""
    lines = Lines("f.jsonl", [_tx(i) for i in range(6)], 1, None)
    for balances in (False, True):
        for _key, batch in _stamper(balances)([lines]):
            again = pickle.loads(pickle.dumps(batch))
            assert again.positions == list(batch.positions) and again.own.events == batch.own.events
            assert {e.balance_after is None for e in again.own.events} <= {not balances}


def test_positions_are_made_for_rejects_and_survive_the_hand_over(tmp_path: Path) -> None:
    """A reject names its `file:LINE` (blank lines counted); own events keep theirs too."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(_tx(0) + b"\n\n" + b"{not json\n" + _tx(1) + b"\n")
    lines = JsonlReader(path, "in.jsonl").read(10)
    assert lines is not None and list(lines)[1] == ("in.jsonl:3", b"{not json")
    batches = [batch for _key, batch in _stamper(False)([lines])]
    assert batches[0].dead_letters == [{"reason": "malformed_json", "source": "in.jsonl:3"}]
    assert batches[0].lines == 3
    again = [pickle.loads(pickle.dumps(b)) for b in batches]
    assert sorted(b.where(j) for b in again for j in range(len(b.positions))) == [
        "in.jsonl:1",
        "in.jsonl:4",
    ]


def test_balances_are_kept_only_where_rules_can_come_to_read_them() -> None:
    """A watched rules file may add a milestone; a wall-clock run without reload cannot."""
    four, rules = load_rules(str(FOUR)), load_rules(str(RULES))
    wall = FlowSettings(rules=str(FOUR), sources=["x"], clock="wall")
    assert keeps_balances(wall.model_copy(update={"watch_rules": True}), four, [])
    assert not keeps_balances(wall, four, [])
    assert keeps_balances(wall, rules, [])  # examples/rules.yaml has a balance milestone
    assert keeps_balances(wall.model_copy(update={"recovery": True}), four, [])


def test_a_batch_counts_its_lines_and_no_end_marker() -> None:
    """`records_in`: a `Lines` counts each line, a Kafka-like item one, an end marker none."""
    lines = Lines("f", [_tx(i) for i in range(3)], 1, None)
    assert records_in([lines, ("t:0:7", _tx(3)), ("f", None)]) == 4
    stamper = Stamper(2, timedelta(0), timedelta(minutes=5), partitioned=True)
    stamped = stamper([lines, ("f", None)])
    assert stamped[0][1].lines == 3


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # what JSON can carry
SOME = st.none() | TEXT
TIMES = st.datetimes(datetime(1900, 1, 1), datetime(9000, 12, 31)).map(
    lambda at: at.replace(tzinfo=UTC)
)
EVENTS = st.one_of(
    st.builds(
        TransactionEvent,
        TEXT,
        TEXT,
        TIMES,
        TEXT,
        st.sampled_from(["credit", "debit"]),
        st.integers(1, MAX_AMOUNT_MINOR),
        st.sampled_from(TRANSACTION_KINDS),
        SOME,
        st.none() | st.sampled_from(get_args(Initiator)),
        SOME,
        st.none() | st.integers(-MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR),
        SOME,
    ),  # fmt: skip
    st.builds(AppEvent, TEXT, TEXT, TIMES, st.sampled_from(get_args(Action)), SOME, SOME, SOME),
    st.builds(ConversionEvent, TEXT, TEXT, TIMES, TEXT, SOME),
)


@given(st.lists(EVENTS, max_size=40))
def test_packed_events_come_back_equal_in_order_and_in_utc(events: list) -> None:
    """Any mix of the three event types, every optional field set or not, round-trips."""
    again = unpack_events(pickle.loads(pickle.dumps(pack_events(events))))
    assert again == events
    assert [type(e) for e in again] == [type(e) for e in events]
    assert all(e.occurred_at.tzinfo is UTC for e in again)  # the one UTC the engine compares


@given(st.lists(EVENTS, min_size=1, max_size=20), st.data())
def test_a_shard_across_processes_gets_its_batch_as_in_the_stamp_steps(events, data) -> None:
    """Positions, events, sources and lines of a picked shard survive the trip to another
    process, so a duplicate's dead letter names the same `file:line` there."""
    n = len(events)
    picked = sorted(data.draw(st.sets(st.integers(0, n - 1))))
    own = Accepted(events, [f"t:{i % 2}" for i in range(n)], list(range(5, 5 + n))).picked(picked)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    batch = Batch([0], [at], picked, own, at, [], n)
    again = pickle.loads(pickle.dumps(batch))
    assert again.positions == picked and list(again.own.events) == list(own.events)
    assert [again.where(j) for j in range(len(picked))] == [
        batch.where(j) for j in range(len(picked))
    ]
    assert list(again.rise_wm) == [at] and again.last_at == at and again.lines == n
