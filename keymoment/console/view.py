"""The console's model: what it follows and the panels built from it, for the web app."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from keymoment.config import RulesFile
from keymoment.desk import uplift
from keymoment.desk.explain import Explanation, explain
from keymoment.desk.records import when

from . import render
from .scrape import Scraper
from .tally import Tally

PANELS = ("counts", "chart", "engine", "recent", "customer", "rules", "dead", "uplift")


class Console:
    """A `Tally` fed by followers, a `Scraper` of metrics endpoints, and the rules file."""

    def __init__(
        self,
        tally: Tally,
        scraper: Scraper,
        rules: RulesFile | None = None,
        window: timedelta = timedelta(days=30),
        conversions: bool = False,
    ) -> None:
        self.tally, self.scraper, self.rules = tally, scraper, rules
        self.rules_version = str(rules.version) if rules is not None else None
        self.window, self.conversions = window, conversions
        self.stop = threading.Event()
        self._uplift: tuple[float, list[tuple]] = (float("-inf"), [])

    def panels(self, rule: str = "", outcome: str = "", customer: str = "") -> dict[str, str]:
        t, procs = self.tally, self.scraper.processes
        snap = t.snapshot()
        return {
            "counts": render.counts(t.counts()),
            "chart": render.chart(t.per_minute()),
            "engine": render.engine(procs),
            "recent": render.recent(t.latest(rule, outcome)),
            "customer": render.customer(customer, self.explain(customer)),
            "rules": render.rules(self.rules_version, snap["versions"], procs, snap["audit"]),
            "dead": render.dead(snap["dead"]),
            "uplift": render.uplift(self.uplift_rows(), _days(self.window), self.conversions),
        }

    def explain(self, customer: str) -> Explanation | None:
        """`keymoment explain` over the customer's decisions seen so far (and the rules file)."""
        if not customer:
            return None
        return explain(customer, self.tally.customer(customer), rules=self.rules)

    def choices(self) -> tuple[list[str], list[str]]:
        """The rules and outcomes seen so far, for the filters."""
        keys = self.tally.counts()["all"]
        return sorted({k[0] for k in keys}), sorted({k[1] for k in keys})

    def status(self) -> dict[str, Any]:
        """Small figures as JSON, for scripts and the benchmark."""
        snap = self.tally.snapshot()
        return {
            "decisions": snap["decisions"],
            "dead_letters": sum(snap["dead"].values()),
            "customers": snap["customers"],
            "malformed": snap["malformed"],
        }

    def uplift_rows(self, every: float = 5.0) -> list[tuple]:
        """`report`'s own arms and intervals per campaign, recomputed at most every `every` s."""
        at, rows = self._uplift
        if time.monotonic() - at < every:
            return rows
        first, conversions = self.tally.exposures()
        exposures = {k: (when(at_), outcome) for k, (at_, outcome) in first.items()}
        times = {c: [when(x) for x in ts] for c, ts in conversions.items()}
        rows = [_uplift_row(row) for row in uplift.tally(exposures, times, self.window)]
        self._uplift = (time.monotonic(), rows)
        return rows


def _uplift_row(row: uplift.CampaignUplift) -> tuple:
    """One table row as `report` prints it: rates, difference, 95% interval, p, warning."""
    t, c, u = row.treated, row.control, row.uplift
    return (
        row.campaign_id,
        f"{t.customers:,}",
        _pct(t.rate),
        f"{c.customers:,}",
        _pct(c.rate),
        f"{u.diff * 100:+.1f} pp" if u.diff == u.diff else "-",
        f"{u.low * 100:+.1f} to {u.high * 100:+.1f} pp" if u.low == u.low else "-",
        f"{u.p_value:.3f}" if u.p_value == u.p_value else "-",
        row.warning or "",
    )


def _pct(rate: float) -> str:
    return f"{rate:.1%}" if rate == rate else "-"  # NaN (an empty arm) is not equal to itself


def _days(window: timedelta) -> str:
    return f"{window.days}d" if window.days and not window.seconds else str(window)
