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


def pct(value: float | None, path: str) -> Cell:
    return ("-", None, None) if value is None else (f"{value * 100:.1f}%", path, "pct")


def pp(value: float | None, path: str) -> Cell:
    return ("-", None, None) if value is None else (f"{value * 100:+.1f}pp", path, "pp")


def key(*parts: str) -> str:
    """A data-path: JSON keys joined by `/` (rule and campaign ids may hold dots)."""
    return "/".join(parts)


# -- the sections a decision set has (backtest, each side of compare) --------


def decisions_sections(t: dict[str, Any], at: str, name: str = "") -> list[str]:
    """Sends per day by channel, outcomes per rule, the funnel, sent by campaign, refusals."""
    label = f" ({name})" if name else ""
    outcomes = sorted({o for r in t["by_rule"].values() for o in r})
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
                        *(count(v.get(o, 0), key(at, "by_rule", r, o)) for o in outcomes),
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
            *(count(v.get(c, 0), key(at, "sent_by_campaign", campaign, c)) for c in channels),
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
                count(r["control"]["customers"], key(base, "control", "customers")),
                pct(r["control"]["rate"], key(base, "control", "rate")),
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
    headers = ["campaign", "treated", "rate", "control", "rate", "uplift", "low", "high", "warning"]
    return page(
        "keymoment report",
        report,
        [intro, section("Conversion by campaign", chart, table(headers, rows))],
    )
