"""The console's one page: the panels as rendered now, the filter and search forms.

Forms are plain GET forms, so the page works without JavaScript; the script
(static/console.js) refreshes the panels every second and submits the forms
without reloading.
"""

from __future__ import annotations

from typing import Any

from .render import e

TITLES = {
    "counts": "Decisions by rule, outcome and channel",
    "chart": "Decisions per minute (last hour)",
    "engine": "Engine: pace, lag and readiness",
    "recent": "Most recent decisions",
    "customer": "Customer",
    "rules": "Rules version and rollouts",
    "dead": "Dead letters by reason",
    "uplift": "Uplift over the control group",
}


def _options(name: str, values: list[str], chosen: str) -> str:
    opts = [f'<option value="">every {e(name)}</option>']
    opts += [
        f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(v)}</option>'
        for v in values
    ]
    return f'<select name="{e(name)}" id="f-{e(name)}">{"".join(opts)}</select>'


def _section(name: str, html: str, extra: str = "") -> str:
    return (
        f'<section class="panel p-{name}"><h2>{e(TITLES[name])}</h2>{extra}'
        f'<div id="{name}" class="body">{html}</div></section>'
    )


def page(console: Any, panels: dict[str, str], rule: str, outcome: str, customer: str) -> str:
    rules, outcomes = console.choices()
    keep = f'<input type="hidden" name="customer" value="{e(customer) if customer else ""}">'
    filters = (
        f'<form id="filters" method="get" action="/">{_options("rule", rules, rule)}'
        f"{_options('outcome', outcomes, outcome)}{keep}<button>filter</button></form>"
    )
    search = (
        '<form id="search" method="get" action="/">'
        f'<input type="search" name="customer" id="q" placeholder="customer token" '
        f'value="{e(customer) if customer else ""}" autocomplete="off">'
        "<button>search</button></form>"
    )
    body = "".join(
        _section(
            name,
            panels[name],
            filters if name == "recent" else search if name == "customer" else "",
        )
        for name in ("counts", "chart", "engine", "customer", "recent", "rules", "dead", "uplift")
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>keymoment console</title>"
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head><body>'
        '<header><h1>keymoment console</h1><span id="updated">live</span></header>'
        f"<main>{body}</main></body></html>"
    )
