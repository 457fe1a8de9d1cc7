"""One self-contained HTML file per report: inline CSS and SVG, no script, no font, no network.

Banks run these air-gapped, so a page is one file that opens anywhere: a
Content-Security-Policy of `default-src 'none'` (styles inline only) makes
the browser refuse any request the page might try. The figures come from
the same JSON the command writes with `--json`, embedded in the page as
`<script type="application/json" id="km-data">` (data, never run); every
number in a table carries `data-path` (where it is in that JSON) and
`data-unit` (`n` a count, `pct` a rate in %, `pp` a difference in points),
which is how the browser test checks that the page says what the JSON says.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

import orjson

from . import svg
from .tally import FUNNEL

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6;white-space:nowrap}td:first-child{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
.warn{color:#a40}svg text{font:11px sans-serif}.note{color:#666}
"""

Cell = tuple[str, str | None, str | None]  # text, data-path, data-unit


def page(title: str, data: dict[str, Any], sections: Sequence[str]) -> str:
    """The whole document: head with CSP and style, the sections, the JSON it was drawn from."""
    blob = orjson.dumps(data).decode().replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{''.join(sections)}"
        f'<script type="application/json" id="km-data">{blob}</script></body></html>\n'
    )


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(cell: Cell | str) -> str:
    if isinstance(cell, str):
        return f"<td>{escape(cell)}</td>"
    text, path, unit = cell
    attrs = f' data-path="{escape(path)}" data-unit="{unit}"' if path else ""
    return f'<td class="n"{attrs}>{escape(text)}</td>'


def count(value: int, path: str) -> Cell:
    return (f"{value:,}", path, "n")


def count_in(mapping: dict[str, int], name: str, path: str) -> Cell:
    """A count from `mapping`; a missing key shows 0 with no data-path (the JSON has none)."""
    return count(mapping[name], path) if name in mapping else ("0", None, None)


def pct(value: float | None, path: str) -> Cell:
    return ("-", None, None) if value is None else (f"{value * 100:.1f}%", path, "pct")


def pp(value: float | None, path: str) -> Cell:
    return ("-", None, None) if value is None else (f"{value * 100:+.1f}pp", path, "pp")


def _bounds(interval: list[float | None], path: str) -> list[Cell]:
    """A rate's interval as two cells (Wilson, 95%)."""
    return [pct(interval[0], key(path, "0")), pct(interval[1], key(path, "1"))]


def key(*parts: str) -> str:
    """A data-path: JSON keys joined by `/` (rule and campaign ids may hold dots)."""
    return "/".join(parts)


# -- the sections a decision set has (backtest, each side of compare) --------


def decisions_sections(t: dict[str, Any], at: str, name: str = "") -> list[str]:
    """Sends per day by channel, outcomes per rule, the funnel, sent by campaign, refusals."""
    label = f" ({name})" if name else ""
    used = {o for r in t["by_rule"].values() for o, n in r.items() if n}
    outcomes = [o for o in (*FUNNEL[1:], *sorted(used)) if o in used]
    outcomes = list(dict.fromkeys(outcomes)) or ["sent"]
    return [
        section(
            f"Sends per day by channel{label}",
            svg.stacked_columns(t["sends_per_day"], f"sends per day by channel{label}"),
        ),
        section(
            f"Outcomes per rule{label}",
            svg.stacked_rows(t["by_rule"], f"outcomes per rule{label}"),
            table(
                ["rule", "candidates", *outcomes],
                [
                    [
                        r,
                        count(sum(v.values()), ""),
                        *(count_in(v, o, key(at, "by_rule", r, o)) for o in outcomes),
                    ]
                    for r, v in t["by_rule"].items()
                ],
            ),
        ),
        section(f"Policy funnel{label}", *_funnel(t["funnel"], at)),
        section(f"Sent by campaign and channel{label}", _sent(t["sent_by_campaign"], at)),
        section(
            f"Cap refusals and arbitration losses{label}",
            table(
                ["cap", "refusals"],
                [[c, count(n, key(at, "cap_refusals", c))] for c, n in t["cap_refusals"].items()],
            ),
            table(
                ["winner", "losses"],
                [
                    [w, count(n, key(at, "arbitration_losses", w))]
                    for w, n in t["arbitration_losses"].items()
                ],
            ),
        ),
    ]


def _funnel(funnel: dict[str, int], at: str) -> list[str]:
    stages = [s for s in (*FUNNEL, "other") if s in funnel]
    chart = svg.stacked_rows({s: {s: funnel[s]} for s in stages}, "policy funnel")
    rows: list[list[Cell | str]] = [[s, count(funnel[s], key(at, "funnel", s))] for s in stages]
    return [chart, table(["stage", "candidates"], rows)]


def _sent(sent: dict[str, dict[str, int]], at: str) -> str:
    channels = sorted({c for v in sent.values() for c in v})
    rows: list[list[Cell | str]] = [
        [
            campaign,
            *(count_in(v, c, key(at, "sent_by_campaign", campaign, c)) for c in channels),
        ]
        for campaign, v in sent.items()
    ]
    return table(["campaign", *channels], rows)


def backtest_page(summary: dict[str, Any]) -> str:
    """`backtest --html`: the replay's figures (summary JSON: `decisions` is a Tally's JSON)."""
    t = summary["decisions"]
    version = escape(str(summary.get("rules_version")))
    head = (
        f"<p>{t['candidates']:,} candidates, {t['customers_contacted']:,} customers contacted; "
        f"rules version {version}.</p>"
    )
    if (warm := summary.get("warm_up")) is not None:
        head += (
            f"<p>Decided from {escape(warm['from'])} (<code>--from</code>): the events before "
            f"it built the rules' state, and the {warm['candidates']:,} candidates they "
            "triggered were not decided.</p>"
        )
    return page("keymoment backtest", summary, [head, *decisions_sections(t, "decisions")])


def report_page(report: dict[str, Any]) -> str:
    """`report --html`: each campaign's two arms and the uplift with its interval."""
    campaigns = report["campaigns"]
    chart = svg.intervals(
        [(c, r["uplift"], r["interval"][0], r["interval"][1]) for c, r in campaigns.items()],
        "uplift over control with 95% interval",
    )
    rows = []
    for c, r in campaigns.items():
        base = key("campaigns", c)
        rows.append(
            [
                c,
                count(r["treated"]["customers"], key(base, "treated", "customers")),
                pct(r["treated"]["rate"], key(base, "treated", "rate")),
                *_bounds(r["treated"]["interval"], key(base, "treated", "interval")),
                count(r["control"]["customers"], key(base, "control", "customers")),
                pct(r["control"]["rate"], key(base, "control", "rate")),
                *_bounds(r["control"]["interval"], key(base, "control", "interval")),
                pp(r["uplift"], key(base, "uplift")),
                pp(r["interval"][0], key(base, "interval", "0")),
                pp(r["interval"][1], key(base, "interval", "1")),
                r["warning"] or "",
            ]
        )
    intro = (
        f"<p>Conversions{' of ' + escape(report['product']) if report.get('product') else ''} "
        f"within {escape(report['window'])} of each customer's first candidate; "
        f"{report['conversion_events']:,} conversion events. Intervals: Wilson for a rate, "
        "Newcombe's hybrid score for the difference, 95%.</p>"
    )
    headers = ["campaign", "treated", "rate", "from", "to", "control", "rate", "from", "to"]
    headers += ["uplift", "low", "high", "warning"]
    return page(
        "keymoment report",
        report,
        [intro, section("Conversion by campaign", chart, table(headers, rows))],
    )


def compare_page(result: dict[str, Any]) -> str:
    """`compare --html`: the difference first, then each side's own charts and tables."""
    c, versions = result["customers"], result.get("versions", {})
    intro = (
        f"<p>Old: rules version {escape(str(versions.get('old')))}, "
        f"new: version {escape(str(versions.get('new')))}, on the same "
        f"{result.get('input', {}).get('events', 0):,} events.</p>"
    )
    customers = table(
        ["customers contacted", "count", "for example"],
        [
            [
                "only by old",
                count(c["only_old"], "customers/only_old"),
                ", ".join(c["sample_only_old"]),
            ],
            [
                "only by new",
                count(c["only_new"], "customers/only_new"),
                ", ".join(c["sample_only_new"]),
            ],
            ["by both", count(c["both"], "customers/both"), ""],
            [
                "sent an offer old did not send",
                count(c["gained_offer"], "customers/gained_offer"),
                "",
            ],
            ["not sent an offer old sent", count(c["lost_offer"], "customers/lost_offer"), ""],
        ],
    )
    changed = table(
        ["old outcome -> new outcome", "candidates"],
        [[k, count(v, key("changed", k))] for k, v in result["changed"].items()],
    )
    sections = [
        intro,
        section("Customers", customers),
        section("Candidates whose outcome changed", changed),
        section("Outcomes per rule: old, new, change", _by_rule_change(result)),
    ]
    for side in ("old", "new"):
        sections += decisions_sections(result["sides"][side], key("sides", side), side)
    return page("keymoment compare", result, sections)


def _by_rule_change(result: dict[str, Any]) -> str:
    old, new = result["sides"]["old"]["by_rule"], result["sides"]["new"]["by_rule"]
    diff = result["difference"]["by_rule"]
    outcomes = [o for o in FUNNEL[1:] if any(o in r for r in (*old.values(), *new.values()))]
    rows: list[list[Cell | str]] = []
    for rule, d in diff.items():
        for o in outcomes:
            a, b = old.get(rule, {}).get(o, 0), new.get(rule, {}).get(o, 0)
            if a or b:
                rows.append(
                    [
                        f"{rule}: {o}",
                        count_in(old.get(rule, {}), o, key("sides", "old", "by_rule", rule, o)),
                        count_in(new.get(rule, {}), o, key("sides", "new", "by_rule", rule, o)),
                        (f"{d.get(o, 0):+,}", key("difference", "by_rule", rule, o), "n"),
                    ]
                )
    return table(["rule: outcome", "old", "new", "change"], rows)
