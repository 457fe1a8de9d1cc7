"""`send_hours` are the hours a channel may send, `quiet_hours` the hours it may not."""

from __future__ import annotations

from datetime import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from keymoment.policy.config import ChannelPolicy
from keymoment.policy.localtime import allowed

spans = st.tuples(
    st.integers(0, 23), st.sampled_from([0, 15, 30]), st.integers(0, 24), st.sampled_from([0, 30])
).filter(lambda h: (h[2] < 24 or h[3] == 0) and (h[0], h[1]) != (h[2], h[3]) and h != (0, 0, 24, 0))
# (00:00-24:00 as quiet_hours leaves no hour: an error, tested below)
minutes = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))


def _text(h: tuple[int, int, int, int]) -> str:
    return f"{h[0]:02d}:{h[1]:02d}-{h[2]:02d}:{h[3]:02d}"


@settings(max_examples=300, deadline=None)
@given(spans, minutes)
def test_quiet_hours_allow_exactly_the_minutes_send_hours_forbid(span, local):
    """The same text as quiet_hours allows a minute if and only if as send_hours it does not."""
    send = ChannelPolicy(send_hours=_text(span)).allowed_hours
    quiet = ChannelPolicy(quiet_hours=_text(span)).allowed_hours
    assert send is not None and quiet is not None
    assert allowed(local, quiet) != allowed(local, send)


def test_the_example_pair_reads_the_same_both_ways():
    """`send_hours: 08:00-21:00` and `quiet_hours: 21:00-08:00` are one setting."""
    send = ChannelPolicy(send_hours="08:00-21:00").allowed_hours
    assert ChannelPolicy(quiet_hours="21:00-08:00").allowed_hours == send


def test_both_settings_for_one_channel_is_an_error():
    """Giving send_hours and quiet_hours for one channel is rejected, naming both."""
    with pytest.raises(ValidationError, match="send_hours or quiet_hours, not both"):
        ChannelPolicy(send_hours="08:00-21:00", quiet_hours="21:00-08:00")


def test_quiet_all_day_is_an_error():
    """quiet_hours with equal ends would never send: an error, not a silent mute."""
    with pytest.raises(ValidationError, match="leave no hour"):
        ChannelPolicy(quiet_hours="08:00-08:00")
    with pytest.raises(ValidationError, match="leave no hour"):  # found by the property above
        ChannelPolicy(quiet_hours="00:00-24:00")
