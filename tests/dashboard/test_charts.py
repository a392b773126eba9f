"""SVG geometry of the results charts."""

from __future__ import annotations

import pytest

from checkoutlab.dashboard.charts import cumulative_chart, interval_chart, verdict
from checkoutlab.experiments.analysis import Comparison, DayPoint


def comparison(
    metric: str,
    lift: float | None,
    ci: tuple[float, float] | None,
    significant: bool = True,
    variant: str = "b",
) -> Comparison:
    return Comparison(
        metric=metric, kind="primary", variant=variant, lift=lift, ci=ci, significant=significant
    )


@pytest.mark.parametrize(
    ("metric", "ci", "significant", "expected"),
    [
        ("conversion", (0.02, 0.10), True, "better"),
        ("conversion", (-0.10, -0.02), True, "worse"),
        ("conversion", (-0.02, 0.10), False, "inconclusive"),
        ("conversion", (0.02, 0.10), False, "inconclusive"),  # not significant after Holm
        ("decline_rate", (0.02, 0.10), True, "worse"),  # lower is better for guardrails
        ("time_to_pay", (-0.3, -0.1), True, "better"),
        ("conversion", None, None, "no_data"),
    ],
)
def test_verdict(
    metric: str, ci: tuple[float, float] | None, significant: bool | None, expected: str
) -> None:
    lift = None if ci is None else sum(ci) / 2
    assert verdict(comparison(metric, lift, ci, bool(significant))) == expected


def test_interval_bars_are_placed_on_a_symmetric_axis() -> None:
    chart = interval_chart(
        [
            comparison("conversion", 0.05, (0.01, 0.09)),
            comparison("conversion", -0.2, (-0.4, 0.0), False, "c"),
            comparison("conversion", None, None, variant="d"),
        ],
        width=640,
        label_width=170,
    )
    assert chart.zero_x == pytest.approx((chart.plot_left + chart.plot_right) / 2)
    assert chart.plot_left == 170 and chart.plot_right < 640
    first, second, third = chart.bars
    assert first.x1 < first.x_lift < first.x2 and first.x1 > chart.zero_x
    assert second.x1 >= chart.plot_left and second.x2 == pytest.approx(chart.zero_x)
    assert third.x1 is None and third.verdict == "no_data"
    # the widest bound (-0.4) sits inside the plot with a margin, not on its edge
    assert chart.plot_left < second.x1
    assert [t.label for t in chart.ticks][2] == "+0%"
    assert first.y < second.y < third.y and chart.height > third.y


def test_cumulative_lines_per_variant() -> None:
    points = [
        DayPoint("2026-11-20", "a", 10, 2, 10, 2, 0.2),
        DayPoint("2026-11-21", "a", 10, 4, 20, 6, 0.3),
        DayPoint("2026-11-20", "b", 10, 5, 10, 5, 0.5),
    ]
    chart = cumulative_chart(points, ["a", "b"])
    a, b = chart.series
    assert [s.variant for s in chart.series] == ["a", "b"] and a.last_label == "30.0%"
    assert a.points[0][0] == chart.plot_left and a.points[1][0] == chart.plot_right
    assert a.points[1][1] < a.points[0][1]  # higher conversion is drawn higher (smaller y)
    assert b.points[0][1] < a.points[1][1]
    assert chart.y_ticks[0][1] == "0%" and chart.y_ticks[0][0] == chart.plot_bottom
    assert [t.label for t in chart.x_ticks] == ["11-20", "11-21"]
    assert cumulative_chart([], ["a"]).series == []
