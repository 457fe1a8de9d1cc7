"""The stamp step's batches: file lines as `Lines`, positions, the hand-over between processes."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import orjson

from keymoment.config import load_rules
from keymoment.connectors.files import JsonlReader, Lines, records_in
from keymoment.flows.dataflow import keeps_balances
from keymoment.flows.settings import FlowSettings
from keymoment.flows.stamp import Stamper

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


def test_a_rebuilt_batch_decodes_balances_as_the_stamp_step_did() -> None:
    """Across a process boundary an event is decoded again, with balance_after only if kept."""
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
