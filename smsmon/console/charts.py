"""Server-rendered SVG charts (no script, no CDN): alerts per day by rule, top-N bars."""

from __future__ import annotations

from html import escape

PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#e7969c", "#6b6ecf", "#b5cf6b",
)  # fmt: skip


def rule_colours(rules: list[str]) -> dict[str, str]:
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(sorted(rules))}


def per_day_chart(days: list[str], per_day: dict[str, dict[str, int]], rules: list[str]) -> str:
    """A stacked bar per day, one colour per rule, with a legend."""
    width, height, left, bottom, top = 760, 260, 48, 40, 12
    colours = rule_colours(rules)
    totals = [sum(per_day.get(d, {}).values()) for d in days]
    peak = max([*totals, 1])
    n = max(len(days), 1)
    slot = (width - left - 10) / n
    bar = max(slot * 0.8, 1.0)
    plot_h = height - bottom - top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'width="{width}" height="{height + 18 * ((len(rules) + 3) // 4)}" '
        f'viewBox="0 0 {width} {height + 18 * ((len(rules) + 3) // 4)}" '
        f'aria-label="alerts per day by rule">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 5}" y2="{top + plot_h}" '
        'stroke="#444"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    label_every = max(1, n // 10)
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = float(top + plot_h)
        for rule in sorted(per_day.get(d, {})):
            c = per_day[d][rule]
            h = plot_h * c / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colours.get(rule, "#999")}"><title>{escape(d)} {escape(rule)}: {c}'
                "</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                f'font-size="10">{escape(d[5:])}</text>'
            )
    for i, rule in enumerate(sorted(rules)):
        lx = left + (i % 4) * 180
        ly = height + 18 * (i // 4) - 6
        parts.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colours[rule]}"/>'
            f'<text x="{lx + 14}" y="{ly}" font-size="11">{escape(rule)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(items: list[tuple[str, int]], label: str) -> str:
    """Horizontal bars, largest first."""
    width, row, left = 520, 20, 190
    peak = max([c for _, c in items] or [1])
    height = row * max(len(items), 1) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(label)}">'
    ]
    for i, (key, c) in enumerate(items):
        y = 3 + i * row
        w = (width - left - 60) * c / peak
        short = key if len(key) <= 26 else key[:25] + "…"
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" font-size="12">'
            f"{escape(short)}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="#1f77b4">'
            f"<title>{escape(key)}: {c}</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 13}" font-size="12">{c}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
