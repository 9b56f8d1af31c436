"""A grouped bar chart as inline SVG: categories along x, one bar per run, 95% interval whiskers."""

from __future__ import annotations

import html
import math

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def run_colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def bar_chart_svg(board: dict, metric: str, width: int = 760, height: int = 300) -> str:
    cats = board["categories"]
    runs = board["runs"]
    name = board["metrics"][metric]
    left, right, top, bottom = 48, 12, 28, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    group_w = plot_w / max(1, len(cats))
    bar_w = group_w * 0.8 / max(1, len(runs))

    # Scores are 0-1; a few (|empathy diff|) can exceed 1: the axis then grows to the next whole number.
    values = [
        v
        for run in runs
        for s in run["scores"][metric].values()
        for v in (s.get("mean"), s.get("high"))
        if isinstance(v, (int, float))
    ]
    y_max = max(1.0, float(math.ceil(max(values, default=1.0))))

    def y(v: float) -> float:
        return top + plot_h * (1 - max(0.0, min(y_max, v)) / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{html.escape(name)} per category">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{html.escape(name)} by category</text>',
    ]
    for tick in (y_max * f for f in (0, 0.25, 0.5, 0.75, 1.0)):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    out.append(
        f'<text transform="translate(12 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">{html.escape(name)}'
        "</text>"
    )
    for ci_, cat in enumerate(cats):
        x0 = left + ci_ * group_w + group_w * 0.1
        for ri, run in enumerate(runs):
            s = run["scores"][metric].get(cat) or {}
            if s.get("mean") is None:
                continue
            x = x0 + ri * bar_w
            tip = f"{run['id']} {cat}: {s['mean']:.3f}"
            if s.get("low") is not None:
                tip += f" [{s['low']:.3f}, {s['high']:.3f}], n={s['n']}"
            out.append(
                f'<rect x="{x:.1f}" y="{y(s["mean"]):.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{top + plot_h - y(s["mean"]):.1f}" fill="{run_colour(ri)}"><title>{html.escape(tip)}'
                "</title></rect>"
            )
            if s.get("low") is not None:
                mid = x + bar_w * 0.45
                out.append(
                    f'<path d="M{mid:.1f} {y(s["low"]):.1f}V{y(s["high"]):.1f}M{mid - 3:.1f} {y(s["low"]):.1f}'
                    f'h6M{mid - 3:.1f} {y(s["high"]):.1f}h6" class="whisker"/>'
                )
        out.append(
            f'<text x="{left + (ci_ + 0.5) * group_w:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{html.escape(cat)}</text>"
        )
    for ri, run in enumerate(runs):
        x = left + ri * 90
        out.append(f'<rect x="{x}" y="{height - 18}" width="10" height="10" fill="{run_colour(ri)}"/>')
        out.append(f'<text x="{x + 14}" y="{height - 9}">{html.escape(run["id"])}</text>')
    out.append("</svg>")
    return "".join(out)
