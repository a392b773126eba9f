"""SVG geometry for the results page: interval bars and cumulative conversion lines.

The charts are computed here and drawn by the templates as inline SVG, so the page needs no
script and no third-party library, works offline and under ``script-src 'self'``; colours
come from classes in ``dashboard.css`` (SVG presentation attributes, never ``style=``, which
the CSP's ``style-src 'self'`` would block).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from checkoutlab.experiments.analysis import Comparison, DayPoint
from checkoutlab.experiments.schemas import INVERSE_METRICS


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class IntervalBar:
    label: str
    y: float
    verdict: str  # better | worse | inconclusive | no_data
    x1: float | None = None
    x2: float | None = None
    x_lift: float | None = None
    title: str = ""


@dataclass(frozen=True)
class IntervalChart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    zero_x: float
    bars: list[IntervalBar]
    ticks: list[Tick]
    row_height: float


def _pct(value: float) -> str:
    return f"{value:+.0%}" if abs(value) >= 0.1 or value == 0 else f"{value:+.1%}"


def verdict(comparison: Comparison) -> str:
    """Whether the interval shows the variant better or worse than control for this metric.

    For guardrails and other lower-is-better metrics an interval above zero is *worse*.
    """
    if comparison.ci is None or comparison.lift is None:
        return "no_data"
    lower, upper = comparison.ci
    if lower <= 0 <= upper or not comparison.significant:
        return "inconclusive"
    higher = lower > 0
    return "worse" if higher == (comparison.metric in INVERSE_METRICS) else "better"


def interval_chart(
    comparisons: Sequence[Comparison],
    *,
    label: str = "variant",
    width: int = 640,
    label_width: int = 170,
    row_height: int = 34,
) -> IntervalChart:
    """One horizontal bar per comparison: the interval of the relative lift, a dot at the
    estimate and a line at zero, on an axis symmetric around zero."""
    finite = [
        abs(v)
        for c in comparisons
        if c.ci is not None
        for v in (*c.ci, c.lift or 0.0)
        if v is not None and math.isfinite(v)
    ]
    half = max([*finite, 0.01]) * 1.15
    left, right = float(label_width), float(width - 34)  # room for the last tick's label
    zero = (left + right) / 2

    def x(value: float) -> float:
        value = min(max(value, -half), half)
        return round(zero + (right - zero) * value / half, 2)

    bars = []
    for i, c in enumerate(comparisons):
        y = 12 + i * row_height + row_height / 2
        name = c.variant if label == "variant" else c.metric.replace("_", " ")
        kind = verdict(c)
        if c.ci is None or c.lift is None:
            bars.append(IntervalBar(name, y, kind, title=c.error or "not enough data"))
            continue
        title = f"{name}: {c.lift:+.2%} [{c.ci[0]:+.2%}, {c.ci[1]:+.2%}]"
        bars.append(IntervalBar(name, y, kind, x(c.ci[0]), x(c.ci[1]), x(c.lift), title))
    ticks = [Tick(x(v), _pct(v)) for v in (-half, -half / 2, 0.0, half / 2, half)]
    height = int(12 + len(comparisons) * row_height + 26)
    return IntervalChart(width, height, left, right, zero, bars, ticks, row_height)


@dataclass(frozen=True)
class Series:
    variant: str
    index: int
    points: list[tuple[float, float]]
    last_label: str

    @property
    def polyline(self) -> str:
        return " ".join(f"{px},{py}" for px, py in self.points)


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[tuple[float, str]] = field(default_factory=list)


_Y_STEPS = (0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25)


def cumulative_chart(
    points: Iterable[DayPoint],
    variants: Sequence[str],
    *,
    width: int = 640,
    height: int = 260,
) -> LineChart:
    """Cumulative conversion per variant by day (each variant in the order given)."""
    points = [p for p in points if p.cumulative_conversion is not None]
    days = sorted({p.date for p in points})
    left, right, top, bottom = 52.0, float(width - 90), 14.0, float(height - 30)
    peak = max([p.cumulative_conversion or 0.0 for p in points] + [0.0])
    # four gridlines at a round step (5%, 10%, 20%, 25%) above the highest point
    step = next((s for s in _Y_STEPS if 4 * s >= peak * 1.1), 0.25)
    top_value = 4 * step

    def px(day: str) -> float:
        if len(days) == 1:
            return round((left + right) / 2, 2)
        return round(left + (right - left) * days.index(day) / (len(days) - 1), 2)

    def py(value: float) -> float:
        return round(bottom - (bottom - top) * value / top_value, 2)

    series = []
    for index, variant in enumerate(variants):
        mine = sorted((p for p in points if p.variant == variant), key=lambda p: p.date)
        if not mine:
            continue
        coords = [(px(p.date), py(p.cumulative_conversion or 0.0)) for p in mine]
        series.append(Series(variant, index, coords, f"{mine[-1].cumulative_conversion:.1%}"))
    every = max(1, math.ceil(len(days) / 6))
    x_ticks = [Tick(px(d), d[5:]) for d in days[::every]]
    digits = 1 if step < 0.05 else 0
    y_ticks = [(py(step * k), f"{step * k:.{digits}%}") for k in range(5)]
    return LineChart(width, height, left, right, top, bottom, series, x_ticks, y_ticks)
