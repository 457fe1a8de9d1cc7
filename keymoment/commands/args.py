"""Argument types the commands share."""

from __future__ import annotations

import argparse
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from keymoment.triggers.events import UtcTime

_UTC_TIME: TypeAdapter[datetime] = TypeAdapter(UtcTime)


def timestamp(text: str) -> datetime:
    """An RFC 3339 time with an offset, as UTC (`--until`)."""
    try:
        return _UTC_TIME.validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time with offset, got {text!r}"
        ) from None
