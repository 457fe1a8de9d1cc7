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


FROM_HELP = (
    "a warm-up: events before this RFC 3339 time only build the rules' state (dormancy "
    "clocks, salary series, windows); candidates triggered before it are not decided"
)


def add_from_argument(parser: argparse.ArgumentParser) -> None:
    """`--from TIME`, the replay's warm-up (`flows.replay.Replay`'s `decide_from`)."""
    parser.add_argument("--from", dest="decide_from", type=timestamp, metavar="TIME",
                        help=FROM_HELP)  # fmt: skip


def checked_from(decide_from: datetime | None, until: datetime | None) -> datetime | None:
    """`--from` as given, or a one-line mistake when nothing could be decided."""
    if decide_from is not None and until is not None and decide_from > until:
        from keymoment.cli import UserError

        raise UserError("--from is after --until: the replay would decide nothing")
    return decide_from
