"""Bar charts as SVG, drawn on the server: no chart library, no script, every label escaped. Each bar
carries its figure (`data-value`) and a `<title>` tooltip; a chart is an image with a text summary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 8, 12, 44


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    css: str
    """The class that colours its bars (`s0`…`s3`, `warn`, `bad`)."""


def _tick(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    if value and value < 1:
        return f"{value:.4f}".rstrip("0")
    return f"{value:g}"


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = _tick,
) -> Markup:
    """Stacked bars, one per label (a day or a deployment), one colour per series."""
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(labels), 1)
    bar_w = max(2.0, min(48.0, step * 0.7))
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" data-chart="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - frac)
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{escape(fmt(peak * frac))}</text>")  # fmt: skip
    for i, label in enumerate(labels):
        x = _LEFT + step * i + (step - bar_w) / 2
        base = float(_TOP + plot_h)
        for s in series:
            value = s.values[i]
            h = plot_h * value / peak
            if value:
                base -= h
                tip = f"{label} · {s.name}: {fmt(value)}"
                out.append(
                    f'<rect class="{escape(s.css)}" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                    f'height="{h:.1f}" data-label="{escape(label)}" data-series="{escape(s.name)}" '
                    f'data-value="{value:g}"><title>{escape(tip)}</title></rect>'
                )
        short = label if len(label) <= 12 else label[:11] + "…"
        out.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{HEIGHT - _BOTTOM + 16}" '
                   f'text-anchor="middle">{escape(short)}</text>')  # fmt: skip
    if not labels:
        out.append(f'<text class="axis" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No data</text>')
    legend_x = float(_LEFT)
    for s in series:
        out.append(f'<rect class="{escape(s.css)}" x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10"/>')
        out.append(f'<text class="axis" x="{legend_x + 14}" y="{HEIGHT - 5}">{escape(s.name)}</text>')
        legend_x += 24 + 7 * len(s.name)
    out.append("</svg>")
    return Markup("".join(out))
