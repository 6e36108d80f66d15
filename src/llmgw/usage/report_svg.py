"""Inline SVG charts for the HTML report: plain shapes and text, no script, no fonts to fetch,
readable in print (black text, mid-tone fills that survive greyscale)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["bars", "hbars", "lines"]

_W, _H = 720, 220
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 12, 14, 34
PALETTE = ("#2f6db5", "#d9822b", "#3a9a5b", "#b23b3b", "#7a5aa6", "#8c6d31")


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top`` (1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if step * mag >= top * (1 - 1e-9):
            return step * mag
    return 10 * mag  # pragma: no cover


def _fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v == int(v):
        return f"{v:.0f}"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.3g}"


def _frame(title: str, top: float, labels: Sequence[str], every: int) -> list[str]:
    plot_h = _H - _PAD_T - _PAD_B
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        v = top * k / 4
        y = _H - _PAD_B - plot_h * k / 4
        out.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" stroke="#ccc" '
            'stroke-width="0.5"/>'
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_fmt(v)}</text>'
        )
    n = max(len(labels), 1)
    slot = (_W - _PAD_L - _PAD_R) / n
    for i, label in enumerate(labels):
        if i % every == 0:
            x = _PAD_L + slot * (i + 0.5)
            out.append(
                f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" font-size="11">'
                f"{escape(label)}</text>"
            )
    return out


def bars(title: str, labels: Sequence[str], values: Sequence[float], *, every: int = 1) -> str:
    """Vertical bars, one per label (usage over time)."""
    top = _nice(max(values, default=0))
    out = _frame(title, top, labels, every)
    plot_h = _H - _PAD_T - _PAD_B
    slot = (_W - _PAD_L - _PAD_R) / max(len(values), 1)
    for i, v in enumerate(values):
        h = plot_h * v / top
        out.append(
            f'<rect x="{_PAD_L + slot * i + slot * 0.1:.1f}" y="{_H - _PAD_B - h:.1f}" '
            f'width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{PALETTE[0]}"><title>'
            f"{escape(labels[i])}: {_fmt(v)}</title></rect>"
        )
    out.append("</svg>")
    return "".join(out)


def lines(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], bool]],
    *,
    every: int = 1,
) -> str:
    """Lines over the same labels: (name, values, dashed) each, with a legend (trends: this
    period against the previous one)."""
    top = _nice(max((max(v, default=0) for _, v, _ in series), default=0))
    out = _frame(title, top, labels, every)
    plot_h = _H - _PAD_T - _PAD_B
    slot = (_W - _PAD_L - _PAD_R) / max(len(labels), 1)
    for k, (name, values, dashed) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = " ".join(
            f"{_PAD_L + slot * (i + 0.5):.1f},{_H - _PAD_B - plot_h * v / top:.1f}"
            for i, v in enumerate(values)
        )
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
        )
        lx = _PAD_L + 10 + 170 * k
        out.append(
            f'<line x1="{lx}" y1="8" x2="{lx + 22}" y2="8" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{lx + 27}" y="12" font-size="11">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def hbars(title: str, rows: Sequence[tuple[str, float, str]]) -> str:
    """Horizontal bars with a label and a note each (provider comparison)."""
    n = max(len(rows), 1)
    h = 26 * n + 20
    top = _nice(max((v for _, v, _ in rows), default=0))
    left, right = 150, 200
    width = _W - left - right
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {h}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, v, note) in enumerate(rows):
        y = 10 + 26 * i
        w = width * v / top
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">{escape(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="20" fill="{color}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{_fmt(v)} {escape(note)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
