"""A few inline SVG charts, drawn here so a report page needs no script, font or network.

Each function returns one `<svg>` element as text; every bar or mark
carries a `<title>` with its exact figure (the browser shows it on hover)
and a `data-value` attribute the page tests read. Escaping is html.escape
on every label, since labels come from operators' rules files.
"""

from __future__ import annotations

from html import escape

PALETTE = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00")
OUTCOME_COLOURS = {
    "candidates": "#555555",
    "sent": "#109618",
    "control": "#3366cc",
    "suppressed": "#990099",
    "arbitration_lost": "#ff9900",
    "capped": "#dc3912",
    "expired": "#777777",
    "no_channel": "#bbbbbb",
}


def colour(name: str, names: list[str]) -> str:
    return OUTCOME_COLOURS.get(name) or PALETTE[names.index(name) % len(PALETTE)]


def legend(names: list[str], x: int, y: int) -> str:
    items = []
    for i, name in enumerate(names):
        items.append(
            f'<rect x="{x + i * 130}" y="{y}" width="10" height="10" fill="{colour(name, names)}"/>'
            f'<text x="{x + i * 130 + 14}" y="{y + 9}">{escape(name)}</text>'
        )
    return "".join(items)


def stacked_columns(stacks: dict[str, dict[str, int]], label: str) -> str:
    """One column per key (a day), stacked by series (a channel): sends per day by channel."""
    keys = list(stacks)
    names = sorted({n for s in stacks.values() for n in s})
    top = max((sum(s.values()) for s in stacks.values()), default=0) or 1
    width, height, left = min(1000, max(320, 4 * len(keys) + 60)), 220, 40
    step = (width - left - 10) / max(len(keys), 1)
    parts = [_axis(left, height, top)]
    for i, key in enumerate(keys):
        y = height - 30.0
        for name in names:
            n = stacks[key].get(name, 0)
            if not n:
                continue
            h = n / top * (height - 60)
            y -= h
            parts.append(
                f'<rect class="bar" x="{left + i * step:.1f}" y="{y:.1f}" '
                f'width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour(name, names)}" data-value="{n}">'
                f"<title>{escape(key)} {escape(name)}: {n:,}</title></rect>"
            )
    if keys:
        parts.append(f'<text x="{left}" y="{height - 14}">{escape(keys[0])}</text>')
        parts.append(
            f'<text x="{width - 10}" y="{height - 14}" text-anchor="end">{escape(keys[-1])}</text>'
        )
    parts.append(legend(names, left, 4))
    return _svg(width, height, label, parts)


def stacked_rows(rows: dict[str, dict[str, int]], label: str) -> str:
    """One horizontal bar per key (a rule), split by series (outcomes)."""
    names = list(dict.fromkeys(n for r in rows.values() for n, v in r.items() if v))
    top = max((sum(r.values()) for r in rows.values()), default=0) or 1
    width, left, bar = 640, 150, 18
    height = 30 + len(rows) * (bar + 6) + 10
    parts = [legend(names, left, 4)]
    for i, (key, row) in enumerate(rows.items()):
        y, x = 30 + i * (bar + 6), float(left)
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(key)}</text>')
        for name in names:
            n = row.get(name, 0)
            if not n:
                continue
            w = n / top * (width - left - 20)
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar}" '
                f'fill="{colour(name, names)}" data-value="{n}">'
                f"<title>{escape(key)} {escape(name)}: {n:,}</title></rect>"
            )
            x += w
    return _svg(width, height, label, parts)


def intervals(rows: list[tuple[str, float | None, float | None, float | None]], label: str) -> str:
    """A point and its interval per row (an uplift in percentage points), a line at zero."""
    known = [v for r in rows for v in r[1:] if v is not None]
    span = max((abs(v) for v in known), default=0.01) or 0.01
    width, left, row_h = 640, 150, 24
    height = 20 + len(rows) * row_h + 20
    scale = (width - left - 30) / (2 * span)
    zero = left + span * scale
    parts = [
        f'<line x1="{zero:.1f}" y1="10" x2="{zero:.1f}" y2="{height - 16}" stroke="#999"/>',
        f'<text x="{zero:.1f}" y="{height - 4}" text-anchor="middle">0</text>',
        f'<text x="{left}" y="{height - 4}">{-span * 100:+.1f}pp</text>',
        f'<text x="{width - 30}" y="{height - 4}" text-anchor="end">{span * 100:+.1f}pp</text>',
    ]
    for i, (name, mid, low, high) in enumerate(rows):
        y = 24 + i * row_h
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{escape(name)}</text>')
        if mid is None or low is None or high is None:
            parts.append(f'<text x="{zero + 4:.1f}" y="{y + 4}">no data</text>')
            continue
        x1, x2, xm = (left + (v + span) * scale for v in (low, high, mid))
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y}" x2="{x2:.1f}" y2="{y}" stroke="#333" stroke-width="2"/>'
            f'<circle class="mark" cx="{xm:.1f}" cy="{y}" r="4" fill="#3366cc" '
            f'data-value="{mid}"><title>{escape(name)}: {mid * 100:+.1f}pp '
            f"({low * 100:+.1f} .. {high * 100:+.1f})</title></circle>"
        )
    return _svg(width, height, label, parts)


def _axis(left: int, height: int, top: int) -> str:
    return (
        f'<line x1="{left}" y1="{height - 30}" x2="{left}" y2="30" stroke="#999"/>'
        f'<text x="{left - 4}" y="34" text-anchor="end">{top:,}</text>'
        f'<text x="{left - 4}" y="{height - 30}" text-anchor="end">0</text>'
    )


def _svg(width: int, height: int, label: str, parts: list[str]) -> str:
    return (
        f'<svg role="img" aria-label="{escape(label)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{escape(label)}</title>{''.join(parts)}</svg>"
    )
