"""Argument types the commands share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from keymoment.triggers.events import UtcTime
from keymoment.triggers.follow_up import FollowUpRule

if TYPE_CHECKING:
    from keymoment.config import RulesFile
    from keymoment.flows.feedback import Logged

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


SENT_LOG_HELP = (
    "with --from: the live run's decision log (JSONL, .gz ok; repeat for several): the offers "
    "it sent before --from go back to the engine in the warm-up, so follow-up rules arm on "
    "them and fire after it"
)


def add_from_argument(parser: argparse.ArgumentParser) -> None:
    """`--from TIME`, the replay's warm-up (`flows.replay.Replay`'s `decide_from`), and
    `--sent-log FILE`, the live offers it feeds back (`warm_sent`)."""
    parser.add_argument("--from", dest="decide_from", type=timestamp, metavar="TIME",
                        help=FROM_HELP)  # fmt: skip
    parser.add_argument("--sent-log", action="append", metavar="FILE", help=SENT_LOG_HELP)


def warm_sent(
    paths: list[str] | None, rules: Sequence[RulesFile], decide_from: datetime | None
) -> Logged | None:
    """`--sent-log`'s offers that a warm-up can feed back: sent before `decide_from`, of a
    campaign some follow-up rule of `rules` follows; or a one-line mistake."""
    if not paths:
        return None
    from keymoment.cli import UserError
    from keymoment.desk.records import InputError, Skipped, decisions
    from keymoment.flows.feedback import sent_in_log

    if decide_from is None:
        raise UserError("--sent-log feeds back offers sent before --from: give --from too")
    followed = {r.after.campaign for f in rules for r in f.rules if isinstance(r, FollowUpRule)}
    if not followed:
        raise UserError("--sent-log: no follow_up rule in the rules, nothing would arm on it")
    skipped, before = Skipped(), []
    try:
        for record in decisions(paths, skipped):
            at = _logged_time(record["triggered_at"])
            if at is None:
                skipped.add("--sent-log")  # not a time: the record cannot be matched
            elif at < decide_from:
                before.append(record)
    except InputError as exc:
        raise UserError(f"--sent-log: {exc}") from None
    for path, n in skipped.counts.items():
        print(f"warning: {n:,} unreadable line(s) in {path} skipped", file=sys.stderr)
    return sent_in_log(before, followed)


def _logged_time(text: str) -> datetime | None:
    """A decision log's time with its offset, or None for anything else."""
    from keymoment.desk.records import when

    try:
        at = when(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def checked_from(decide_from: datetime | None, until: datetime | None) -> datetime | None:
    """`--from` as given, or a one-line mistake when nothing could be decided."""
    if decide_from is not None and until is not None and decide_from > until:
        from keymoment.cli import UserError

        raise UserError("--from is after --until: the replay would decide nothing")
    return decide_from
