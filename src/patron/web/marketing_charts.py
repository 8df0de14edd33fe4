"""ECharts options of the campaign results page: uplift with its interval, and each arm's
cumulative conversion over the days since launch.

Options are plain data (see ``web/charts.py``): the interval is drawn as a boxplot whose
five numbers are ``[low, estimate, estimate, estimate, high]`` (whiskers from low to high
around a box of no width at the estimate), which is an error bar without any drawing code
in the page; the value axis always includes zero, marked by a dashed "no effect" line. Conversion
uplift is in percentage points and revenue uplift in the currency's major units, so each
gets its own small panel with its own zero line; a reader sees at once whether the
interval crosses zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patron.web.charts import GRID, Option, lines


@dataclass(frozen=True)
class Bar:
    """One interval to draw: a label, its unit and the three numbers, already scaled."""

    label: str
    unit: str
    estimate: float
    low: float
    high: float


def _round(value: float) -> float:
    return round(value, 2)


def uplift(bars: Sequence[Bar], *, zero_label: str) -> Option:
    """A forest plot: one panel per interval (each in its own unit), the estimate as a dot,
    the interval as whiskers, and a dashed line at zero (no effect)."""
    n = max(len(bars), 1)
    height = 100 / n
    option: Option = {
        "tooltip": {"trigger": "item"},
        "grid": [], "xAxis": [], "yAxis": [], "series": [],
    }
    for i, bar in enumerate(bars):
        top, bottom = i * height, 100 - (i + 1) * height
        option["grid"].append({"left": GRID["left"], "right": 24, "containLabel": True,
                               "top": f"{top + 10:.0f}%", "bottom": f"{bottom + 12:.0f}%"})
        option["xAxis"].append({"type": "value", "gridIndex": i, "scale": False,
                                "name": bar.unit, "nameLocation": "middle", "nameGap": 24,
                                "axisLabel": {"formatter": "{value}"},
                                "splitLine": {"lineStyle": {"type": "dotted"}}})
        option["yAxis"].append({"type": "category", "gridIndex": i, "data": [bar.label],
                                "axisTick": {"show": False}})
        low, est, high = _round(bar.low), _round(bar.estimate), _round(bar.high)
        option["series"].append({
            "type": "boxplot", "name": bar.label, "xAxisIndex": i, "yAxisIndex": i,
            "boxWidth": [2, 14], "data": [[low, est, est, est, high]],
            "itemStyle": {"color": "#dbeafe", "borderColor": "#2563eb", "borderWidth": 2},
            "tooltip": {"formatter": f"{bar.label}: {est} ({low} … {high}) {bar.unit}"},
            "markLine": {"silent": True, "symbol": "none",
                         "lineStyle": {"type": "dashed", "color": "#dc2626"},
                         "label": {"formatter": zero_label}, "data": [{"xAxis": 0}]}})
        option["series"].append({
            "type": "scatter", "name": bar.label, "xAxisIndex": i, "yAxisIndex": i,
            "symbolSize": 12, "data": [[est, 0]], "itemStyle": {"color": "#1d4ed8"},
            "label": {"show": True, "position": "top", "formatter": f"{est:+g}"},
            "tooltip": {"formatter": f"{bar.label}: {est:+g} {bar.unit}"}})
    return option


def cumulative_conversion(days: Sequence[int], arms: Sequence[tuple[str, Sequence[float]]],
                          *, day_label: str) -> Option:
    """Each arm's cumulative conversion (shares in [0, 1], drawn in per cent) by day since
    its window opened."""
    categories = [day_label % {"day": d + 1} for d in days]
    series = [(name, [round(v * 100, 2) for v in values]) for name, values in arms]
    option = lines(categories, series, percent=True)
    for drawn in option["series"]:
        drawn["smooth"] = False
        drawn["showSymbol"] = True
        drawn["step"] = False
    return option
