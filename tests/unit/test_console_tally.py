"""The console's counts: minute windows against brute force, bounded memory, the uplift rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from html import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from keymoment.console.scrape import Scraper
from keymoment.console.tally import Tally
from keymoment.console.view import Console
from keymoment.desk import uplift
from keymoment.desk.explain import explain
from keymoment.desk.records import when

NOW = datetime(2026, 5, 1, 12, 30, 17, tzinfo=UTC).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def decision(
    age: float, rule: str, outcome: str, customer: str = "c1", campaign: str = "k"
) -> dict:
    return {
        "rule_id": rule,
        "outcome": outcome,
        "channel": "sms" if outcome == "sent" else None,
        "decided_at": _iso(NOW - age),
        "triggered_at": _iso(NOW - age - 5),
        "customer_id": customer,
        "campaign_id": campaign,
        "rule_version": 7,
    }


ages = st.floats(min_value=-30, max_value=3 * 3600, allow_nan=False)
records = st.lists(
    st.builds(decision, ages, st.sampled_from(["a", "b"]), st.sampled_from(["sent", "capped"])),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(records, max_size=4))
def test_window_counts_equal_brute_force_by_whole_minutes(batches) -> None:
    """5 min = this minute and the 4 before, by decided_at; 1 h likewise; all = every record."""
    tally = Tally(clock=lambda: NOW)
    for batch in batches:
        tally.decisions(batch)
    flat = [r for b in batches for r in b]
    now_minute = int(NOW // 60)

    def expect(minutes: int) -> Counter:
        return Counter(
            (r["rule_id"], r["outcome"], r["channel"] or "-")
            for r in flat
            if 0 <= now_minute - int(when(r["decided_at"]).timestamp() // 60) < minutes
        )

    got = tally.counts()
    assert got["5m"] == expect(5) and got["1h"] == expect(60)
    assert got["all"] == Counter((r["rule_id"], r["outcome"], r["channel"] or "-") for r in flat)
    assert sum(n for _, n in tally.per_minute()) == sum(expect(60).values())
    assert len(tally.minutes) <= 62 + sum(1 for r in flat if r["decided_at"] > _iso(NOW))


def test_memory_is_bounded_and_bad_records_are_counted() -> None:
    """Recent and per-customer lists are fixed-length; the customer index keeps the newest."""
    tally = Tally(clock=lambda: NOW, recent=10, per_customer=3, max_customers=5)
    tally.decisions(decision(i, "a", "sent", customer=f"c{i % 8}") for i in range(100))
    tally.decisions([{"outcome": "sent"}, {"rule_id": 3, "outcome": "sent"}])
    assert len(tally.recent) == 10 and len(tally.customers) == 5
    assert all(len(h) <= 3 for h in tally.customers.values())
    assert tally.snapshot()["malformed"] == 2 and tally.snapshot()["decisions"] == 100
    assert [r["customer_id"] for r in tally.latest(limit=3)] == ["c3", "c2", "c1"]


def test_uplift_rows_are_reports_arms() -> None:
    """The panel's rows come from desk.uplift over the first candidate of each customer."""
    tally = Tally(clock=lambda: NOW)
    rows = [decision(100, "a", "sent", f"s{i}") for i in range(40)]
    rows += [decision(100, "a", "control", f"h{i}") for i in range(20)]
    rows.append(decision(50, "a", "control", "s0"))  # later: not the first exposure
    tally.decisions(rows)
    conversions = [
        {"type": "conversion", "customer_id": f"s{i}", "occurred_at": _iso(NOW)} for i in range(10)
    ]
    tally.add_conversions(conversions)
    console = Console(tally, Scraper([]), conversions=True)
    first = uplift.first_exposures(rows)
    expected = uplift.tally(first, uplift.conversions(conversions, None), timedelta(days=30))[0]
    row = console.uplift_rows()[0]
    assert row[:5] == ("k", "40", "25.0%", "20", "0.0%")
    assert expected.treated.converted == 10 and row[5] == f"{expected.uplift.diff * 100:+.1f} pp"
    html = console.panels()["uplift"]
    assert "conversions within 30d" in html and "25.0%" in html


def test_every_value_is_escaped_in_the_panels() -> None:
    """A rule id or customer token with markup is shown as text, never as HTML."""
    tally = Tally(clock=lambda: NOW)
    tally.decisions([decision(1, "<script>x</script>", "sent", customer='"><img src=x>')])
    panels = Console(tally, Scraper([])).panels(customer='"><img src=x>')
    for html in panels.values():
        assert "<script>x" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;" in panels["counts"]


def test_the_customer_panel_says_what_explain_says() -> None:
    """The search shows desk.explain's headline and per-candidate sentences for that customer."""
    tally = Tally(clock=lambda: NOW)
    capped = dict(decision(60, "a", "capped", customer="c9"), reason="daily-any")
    tally.decisions([decision(90, "a", "sent", customer="c9"), capped, decision(5, "b", "sent")])
    found = explain("c9", [decision(90, "a", "sent", customer="c9"), capped])
    html = Console(tally, Scraper([])).panels(customer="c9")["customer"]
    assert escape(found.lines()[0]) in html and found.lines()[0].startswith("customer c9: 2 cand")
    assert all(escape(c["text"]) in html for c in found.candidates)
    assert (
        "no decisions seen for nobody"
        in Console(tally, Scraper([])).panels(customer="nobody")["customer"]
    )


def test_the_rules_panel_shows_versions_seen_and_the_audit_stream() -> None:
    """Versions in decisions are counted; reload records in the rollout's words, newest first."""
    tally = Tally(clock=lambda: NOW)
    tally.decisions([decision(9, "a", "sent"), dict(decision(3, "a", "sent"), rule_version=8)])
    base = {"event": "rules_reload", "source": "rules.yaml", "from_version": 7}
    rejected = dict(base, at="t1", to_version=None, result="rejected", problems=["bad window"])
    applied = dict(base, at="t2", to_version=8, result="applied", effective_at="t3")
    applied.update(added=["new-rule"], removed=[], changed=[], sections={}, content="SECRET-FILE")
    tally.audits([rejected, applied])
    html = Console(tally, Scraper([])).panels()["rules"]
    assert "7 (1), 8 (1)" in html and "SECRET-FILE" not in html
    assert html.index("applied at watermark t3: +new-rule") < html.index("REJECTED, still on 7")


def test_a_triggered_at_that_does_not_parse_never_replaces_the_first_decision() -> None:
    """First decision per (campaign, customer) by time; a time that does not parse never wins."""
    tally = Tally(clock=lambda: NOW)
    good = decision(10, "a", "sent")
    bad = {**decision(0, "a", "capped"), "triggered_at": "not a time"}
    earlier = {**decision(20, "a", "capped"), "triggered_at": _iso(NOW - 100)}
    tally.decisions([bad, good, earlier])
    assert tally.first[("k", "c1")] == (earlier["triggered_at"], "capped")
    tally2 = Tally(clock=lambda: NOW)
    tally2.decisions([good, bad])
    assert tally2.first[("k", "c1")] == (good["triggered_at"], "sent")
