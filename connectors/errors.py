"""Failures of a connector that the operator has to fix, said in one line by the command.

A sink or source raising inside a running flow reaches the command wrapped by
Bytewax (`BytewaxRuntimeError`, the original as its cause); `failure` finds a
`ConnectorError` in that chain, so `keymoment run` prints its message instead of
a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A connector cannot go on and losing data is not an option: one line for the user."""


def failure(exc: BaseException) -> ConnectorError | None:
    """The `ConnectorError` that caused `exc`, if one did."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectorError):
            return seen
        seen = seen.__cause__
    return None
