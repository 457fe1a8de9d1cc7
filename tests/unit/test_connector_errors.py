"""A connector that stops a running flow is one line for the operator, not a traceback."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from keymoment.cli import UserError
from keymoment.commands.run import connector_failures
from keymoment.connectors.errors import failure
from keymoment.connectors.kafka import KafkaSinkError


class _Refusing(StatelessSinkPartition[int]):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def write_batch(self, items: list[int]) -> None:
        raise self.error


class _Sink(DynamicSink[int]):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Refusing:
        return _Refusing(self.error)


def _run(error: Exception) -> None:
    flow = Dataflow("refused")
    op.output("out", op.input("in", flow, TestingSource([1])), _Sink(error))
    run_main(flow)


def test_a_connector_error_raised_inside_bytewax_is_one_line() -> None:
    refused = KafkaSinkError("the broker refused a message to offers: not authorised")
    message = "^the broker refused a message to offers: not authorised$"
    with pytest.raises(UserError, match=message), connector_failures():
        _run(refused)


def test_any_other_failure_keeps_its_traceback() -> None:
    with pytest.raises(Exception) as raised, connector_failures():
        _run(ZeroDivisionError("a bug"))
    assert not isinstance(raised.value, UserError)
    assert failure(raised.value) is None
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
