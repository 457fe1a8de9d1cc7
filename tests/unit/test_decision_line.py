"""`Decision.log_line` and `offer_line` write `dumps_line` of their dicts, byte for byte.

The line leaves the times to orjson (`OPT_UTC_Z`) when that is exact, and falls back
to the record's own path when not: times in other zones (offsets with seconds too),
attribute values orjson would write differently (datetimes) and non-str keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.connectors.files import dumps_line
from keymoment.policy.decision import OUTCOMES, Decision
from keymoment.policy.leads import LeadTag
from keymoment.triggers.candidate import Candidate

ZONES = [
    UTC,
    ZoneInfo("UTC"),
    ZoneInfo("Europe/London"),
    ZoneInfo("Asia/Shanghai"),
    ZoneInfo("Europe/Amsterdam"),  # before 1937 its offset has seconds (+00:19:32)
    timezone(timedelta(0)),
    timezone(timedelta(hours=-5, minutes=-30)),
    timezone(timedelta(seconds=75)),
]


@st.composite
def times(draw: st.DrawFn) -> datetime:
    """Mostly UTC (what the engine and the policy make), sometimes any zone, any year."""
    at = draw(st.datetimes(datetime(1800, 1, 1), datetime(9998, 1, 1)))
    at = at.replace(microsecond=draw(st.sampled_from([0, at.microsecond])))
    tz = draw(st.sampled_from(ZONES[:1] * 4 + ZONES))
    return at.replace(tzinfo=tz)


scalars = st.one_of(
    st.text(max_size=8), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none(), st.floats()
)
values = st.one_of(scalars, times(), st.lists(scalars, max_size=2), st.tuples(times()))
attributes = st.dictionaries(st.one_of(st.text(max_size=6), st.integers(0, 9)), values, max_size=3)


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    triggered_at = draw(times())
    candidate = Candidate(
        rule_id=draw(st.sampled_from(["big-deposit", "dormant"])),
        trigger="large_deposit",
        campaign="wm",
        customer_id=draw(st.text(min_size=1, max_size=8)),
        triggered_at=triggered_at,
        event_id="E1",
        attributes=draw(attributes),
        timer=draw(st.booleans()),
    )
    lead = draw(
        st.none()
        | st.builds(
            LeadTag,
            st.none() | st.just("RM7"),
            st.none() | st.just("branch:B1"),
            st.none() | times(),
        )
    )
    return Decision(
        candidate,
        draw(st.sampled_from(OUTCOMES)),
        draw(st.none() | st.sampled_from(["admitted", "holdout", "ttl"])),
        "wm",
        "WM-07",
        draw(st.integers(1, 3) | st.just("v2")),
        draw(times()),
        draw(st.none() | st.just("sms")),
        draw(st.none() | st.just(triggered_at) | times()),
        draw(st.none() | times()),
        draw(st.none() | st.just("A")),
        draw(st.none() | st.dictionaries(st.text(max_size=4), values, max_size=2)),
        lead,
        draw(st.none() | st.just("0" * 32)),
    )


@settings(max_examples=400, deadline=None)
@given(decision=decisions())
def test_the_line_is_the_records_line(decision):
    assert decision.log_line() == dumps_line(decision.log_record())


@settings(max_examples=50, deadline=None)
@given(decision=decisions())
def test_the_line_is_the_same_after_the_offer_was_built(decision):
    """A sent decision of the live flow builds its offer first; the line does not change."""
    before = decision.log_line()
    decision.offer()
    assert decision.log_line() == before == dumps_line(decision.log_record())


@settings(max_examples=400, deadline=None)
@given(decision=decisions())
def test_the_offer_line_is_the_offers_line(decision):
    """`offer_line` (an offers file's line, made without the offer's dict) is `offer()`'s."""
    assert decision.offer_line() == dumps_line(decision.offer())


@settings(max_examples=50, deadline=None)
@given(decision=decisions())
def test_the_offer_line_is_the_same_after_the_offer_was_built(decision):
    before = decision.offer_line()
    decision.offer()
    assert decision.offer_line() == before == dumps_line(decision.offer())
