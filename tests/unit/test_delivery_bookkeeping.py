"""Properties of the delivery stage's bookkeeping: every offer settles once, the backlog is bounded.

`send` here is a scripted function (the stage's own injection point, no
network): each offer gets a drawn sequence of answers. Whatever the
answers, the backlog limit and the retry budget, every submitted offer ends
exactly once (delivered or one dead letter), the backlog never exceeds its
limit, and the reasons follow from the answers.
"""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.connectors.delivery import Attempt, DeliveryStage, Outbox, RetryPolicy

ANSWERS = st.sampled_from([200, 201, 400, 404, 408, 429, 500, 503, None])
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


class Script:
    def __init__(self, answers: dict[str, list[int | None]]) -> None:
        self.answers, self.calls = answers, dict.fromkeys(answers, 0)
        self.lock = threading.Lock()

    def __call__(self, offer: dict) -> Attempt:
        oid = offer["offer_id"]
        with self.lock:
            n = self.calls[oid]
            self.calls[oid] += 1
        seq = self.answers[oid]
        return Attempt(seq[n] if n < len(seq) else 200)


def expected_reason(seq: list[int | None], max_attempts: int) -> str | None:
    """What the stage must conclude from an offer's answers (None: delivered)."""
    for n in range(max_attempts):
        status = seq[n] if n < len(seq) else 200
        if status is not None and 200 <= status < 300:
            return None
        if status is not None and status < 500 and status not in (408, 429):
            return "webhook_rejected"
    return "webhook_unavailable"


@settings(max_examples=40, deadline=None)
@given(
    answers=st.lists(st.lists(ANSWERS, max_size=4), min_size=1, max_size=30),
    max_backlog=st.integers(1, 40),
    in_flight=st.integers(1, 4),
)
def test_every_offer_settles_exactly_once_and_the_backlog_stays_bounded(
    answers: list[list[int | None]], max_backlog: int, in_flight: int
) -> None:
    """Delivered + dead letters = submitted, one each; reasons follow the answers."""
    script = Script({f"o{i}": seq for i, seq in enumerate(answers)})
    stage = DeliveryStage(script, "test", "webhook", in_flight, max_backlog, NO_WAIT)
    box = Outbox()
    for oid in script.answers:
        stage.submit({"offer_id": oid}, box)
        assert stage.backlog <= max_backlog
    assert box.wait(30)
    stage.close()
    dead = {d["offer_id"]: d["reason"] for d in box.take_dead()}
    delivered = stage.counts["delivered"]
    assert delivered + len(dead) == len(answers)
    for oid, seq in script.answers.items():
        if script.calls[oid] == 0:  # never tried: it found the backlog full
            assert dead[oid] == "channel_backlog_full"
        else:
            assert dead.get(oid) == expected_reason(seq, NO_WAIT.max_attempts)
    assert stage.backlog == 0 and stage.peak_backlog <= max_backlog


@given(attempt=st.integers(1, 30), base=st.floats(0.001, 5.0), cap=st.floats(0.01, 60.0))
def test_backoff_is_jittered_within_half_and_all_of_the_capped_exponential(
    attempt: int, base: float, cap: float
) -> None:
    """Attempt n waits between half and all of min(base * 2**(n-1), max_delay)."""
    policy = RetryPolicy(base_delay=base, max_delay=cap)
    bound = min(base * 2 ** (attempt - 1), cap)
    assert bound / 2 <= policy.delay(attempt) <= bound


@given(retry_after=st.floats(0.0, 10_000.0))
def test_retry_after_replaces_the_draw_up_to_its_cap(retry_after: float) -> None:
    """A gateway's Retry-After is the wait, up to `max_retry_after`."""
    assert RetryPolicy().delay(1, retry_after) == min(retry_after, 3600.0)
