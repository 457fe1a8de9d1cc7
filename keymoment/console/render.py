"""The console's panels as HTML, rendered on the server; every value passes `html.escape`.

The page is whole on first load (it works without JavaScript); the script
then asks for the panels again every second and swaps them in. Only
presentation attributes are used in the SVG chart: the CSP allows no inline
style.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from keymoment.desk.explain import Explanation
from keymoment.rollout.audit import log_line

from .scrape import Process
from .tally import Key

WINDOWS = (("5m", "last 5 min"), ("1h", "last hour"), ("all", "since start"))
RECENT_FIELDS = (
    *("decided_at", "customer_id", "rule_id", "campaign_id"),
    *("outcome", "reason", "channel", "send_at"),
)


def e(value: Any) -> str:
    return escape("-" if value is None or value == "" else str(value))


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def empty(text: str) -> str:
    return f'<p class="empty">{e(text)}</p>'


def counts(windows: dict[str, Any]) -> str:
    """Per (rule, outcome, channel): one column per window; a cell's data-key names it."""
    keys: list[Key] = sorted(windows["all"])
    if not keys:
        return empty("no decisions yet")
    head = "".join(f"<th>{e(label)}</th>" for _, label in WINDOWS)
    rows = []
    for key in keys:
        cells = "".join(
            f'<td class="n" data-key="{e("|".join(key))}" data-window="{w}">'
            f"{windows[w][key]:,}</td>"
            for w, _ in WINDOWS
        )
        rows.append(f"<tr><td>{e(key[0])}</td><td>{e(key[1])}</td><td>{e(key[2])}</td>{cells}</tr>")
    totals = "".join(f'<td class="n">{sum(windows[w].values()):,}</td>' for w, _ in WINDOWS)
    return (
        f"<table><thead><tr><th>rule</th><th>outcome</th><th>channel</th>{head}</tr></thead>"
        f'<tbody>{"".join(rows)}</tbody><tfoot><tr><td colspan="3">all decisions</td>{totals}'
        "</tr></tfoot></table>"
    )


def chart(per_minute: list[tuple[int, int]], width: int = 600, height: int = 120) -> str:
    """Decisions per minute over the last hour, as SVG bars (newest on the right)."""
    peak = max((n for _, n in per_minute), default=0) or 1
    step = width / max(len(per_minute), 1)
    bars = []
    for i, (minute, n) in enumerate(per_minute):
        h = round(n / peak * (height - 20), 1)
        label = datetime.fromtimestamp(minute, UTC).strftime("%H:%M")
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h}" fill="#2f6fb3"><title>{label} UTC: {n:,}</title></rect>'
        )
    top = f'<text x="2" y="12" font-size="11" fill="#555">peak {peak:,}/min</text>'
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="decisions per minute, last hour">{top}{"".join(bars)}</svg>'
    )


def engine(processes: list[Process]) -> str:
    if not processes:
        return empty("no --metrics endpoint given")
    rows = []
    for p in processes:
        state = "ready" if p.ready else ("not ready" if p.up else "down")
        lag = p.values.get("lag")
        rows.append(
            (
                p.url,
                ",".join(p.processes) or "-",
                state,
                "; ".join(p.reasons) or "-",
                f"{p.rates.get('records', 0):,.0f}/s" if p.rates else "-",
                f"{p.rates.get('decisions', 0):,.0f}/s" if p.rates else "-",
                span(lag) if lag is not None else "-",
                f"{p.values.get('parked', 0):,.0f}",
            )
        )
    head = ("endpoint", "process", "state", "why", "events", "decisions", "lag", "parked")
    return table(head, rows)


def span(seconds: float) -> str:
    """A lag for people: `0.4 s`, `3.2 min`, `5.0 h`, `260 d` (an event-clock replay's)."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size * 2:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s"


def recent(rows: list[dict]) -> str:
    if not rows:
        return empty("no decisions match")
    return table(RECENT_FIELDS, ([r.get(f) for f in RECENT_FIELDS] for r in rows), "recent")


def customer(customer_id: str, found: Explanation | None) -> str:
    """What `keymoment explain` says about the customer, from the decisions the console saw."""
    if not customer_id or found is None:
        return empty("search a customer token to see every decision about them")
    if not found.candidates:
        return empty(f"no decisions seen for {customer_id}")
    rows = (
        [
            c["at"],
            c["rule_id"],
            c.get("trigger"),
            c["campaign_id"],
            c["outcome"],
            c.get("channel"),
            c["text"],
        ]
        for c in found.candidates
    )
    head = ("triggered_at", "rule", "trigger", "campaign", "outcome", "channel", "why")
    notes = "".join(f'<p class="empty">{e(n)}</p>' for n in found.notes)
    return f"<p>{e(found.lines()[0])}</p>" + table(head, rows, "customer") + notes


def rules(
    file_version: str | None, seen: dict[str, int], processes: list[Process], audit: list[dict]
) -> str:
    live = sorted({p.version for p in processes if p.version})
    lines = [
        f"<p>rules file: <b>{e(file_version)}</b> · engine: <b>{e(', '.join(live))}</b> · "
        f"in decisions: <b>{e(', '.join(f'{v} ({n:,})' for v, n in sorted(seen.items())))}</b></p>"
    ]
    if audit:
        head = ("at", "result", "from", "to", "effective at", "what")
        rows = (
            (r.get("at"), r.get("result"), r.get("from_version"), r.get("to_version"))
            + (r.get("effective_at"), _said(r))
            for r in reversed(audit)
        )
        lines.append(table(head, rows, "audit"))
    else:
        lines.append(
            empty("no rollout audit stream given (--audit): versions as seen in decisions")
        )
    return "".join(lines)


def _said(record: dict) -> str:
    """The rollout's own log line for an audit record (never its full file `content`)."""
    try:
        return log_line(record)
    except (KeyError, TypeError):
        return str(record.get("event") or "-")


def dead(reasons: dict[str, int]) -> str:
    if not reasons:
        return empty("no dead letters")
    return table(
        ("reason", "count"),
        ((r, f"{n:,}") for r, n in sorted(reasons.items(), key=lambda x: -x[1])),
    )


def uplift(rows: list[tuple], window: str, conversions: bool) -> str:
    if not rows:
        return empty("no campaign has sent or control decisions yet")
    head = ("campaign", "treated", "rate", "control", "rate", "uplift", "95% interval", "p", "")
    what = (
        f"conversions within {e(window)} of the first candidate"
        if conversions
        else "no conversion events followed (--conversions URL): arm sizes only"
    )
    return f"<p>{what}</p>" + table(head, rows)
