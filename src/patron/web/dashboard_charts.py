"""ECharts options of the dashboard's charts: plain dicts, embedded as JSON by the page.

Like ``charts``, every option is data only (labels use ECharts' string templates, never
functions). The builders take figures already reduced to what is drawn and labels already
translated, so they know nothing about services or languages. Percentages are drawn as
numbers 0-100 with one decimal; money as major units (the tooltip texts carry the exact,
locale-formatted amounts the page passes in item names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from patron.web.charts import GRID, Option

#: Colours with a meaning, matching app.css (ok green, danger red, accent teal).
GAIN, REGAIN, LOSS, NET = "#16a34a", "#0891b2", "#dc2626", "#17202e"
HEAT = ["#f0f9f7", "#a7ddd3", "#4fb3a2", "#0e7a6d", "#0a4f47"]
VALUE = ["#dbeafe", "#93c5fd", "#3b82f6", "#1d4ed8", "#1e3a8a"]


def _pct(share: float) -> float:
    return round(share * 100, 1)


def leaky_bucket(periods: Sequence[str], *, new: Sequence[int], reactivated: Sequence[int],
                 lapsed: Sequence[int], names: tuple[str, str, str, str]) -> Option:
    """Stacked bars per month: new and reactivated members above the axis, lapsed ones
    below it (negative), and the net change as a line. ``names``: new, reactivated,
    lapsed, net change."""
    net = [n + r - lp for n, r, lp in zip(new, reactivated, lapsed, strict=True)]
    bar = {"type": "bar", "stack": "flow", "barMaxWidth": 36}
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": GRID,
        "xAxis": {"type": "category", "data": list(periods)},
        "yAxis": {"type": "value"},
        "series": [
            {**bar, "name": names[0], "data": list(new), "itemStyle": {"color": GAIN}},
            {**bar, "name": names[1], "data": list(reactivated), "itemStyle": {"color": REGAIN}},
            {**bar, "name": names[2], "data": [-v for v in lapsed], "itemStyle": {"color": LOSS}},
            {"type": "line", "name": names[3], "data": net, "itemStyle": {"color": NET},
             "lineStyle": {"width": 2}, "symbolSize": 6},
        ],
    }


def pareto(curve: Sequence[tuple[float, float]], *, top_fraction: float,
           top_share: float | None, names: tuple[str, str, str]) -> Option:
    """The Pareto (Lorenz-style) curve in percent: share of purchasing members, biggest
    spenders first, against their share of member revenue; a dashed equality line and a
    marker where the top ``top_fraction`` ends. ``names``: curve, equality line, the
    marker's label (may use ``{c}``)."""
    data = [[_pct(x), _pct(y)] for x, y in curve]
    series: list[Option] = [
        {"type": "line", "name": names[0], "data": data, "showSymbol": False, "smooth": False,
         "areaStyle": {"opacity": 0.12}, "lineStyle": {"width": 2}},
        {"type": "line", "name": names[1], "data": [[0, 0], [100, 100]], "showSymbol": False,
         "lineStyle": {"type": "dashed", "width": 1, "color": "#98a2b3"},
         "itemStyle": {"color": "#98a2b3"}, "tooltip": {"show": False}},
    ]
    if top_share is not None:
        x, y = _pct(top_fraction), _pct(top_share)
        series[0]["markLine"] = {
            "symbol": "none", "silent": True, "label": {"show": False},
            "lineStyle": {"type": "dotted", "color": LOSS},
            "data": [[{"coord": [x, 0]}, {"coord": [x, y]}],
                     [{"coord": [0, y]}, {"coord": [x, y]}]]}
        series[0]["markPoint"] = {
            "symbol": "circle", "symbolSize": 10, "itemStyle": {"color": LOSS},
            "label": {"show": True, "position": "right", "color": LOSS, "fontWeight": "bold",
                      "formatter": names[2].format(share=f"{y:g}", top=f"{x:g}")},
            "data": [{"coord": [x, y], "value": y}]}
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": GRID,
        "xAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
        "yAxis": {"type": "value", "min": 0, "max": 100, "axisLabel": {"formatter": "{value}%"}},
        "series": series,
    }


def cohort_heatmap(cohorts: Sequence[str], retention: Sequence[Sequence[float]], *,
                   month_label: str, name: str) -> Option:
    """Cohorts (rows, oldest at the top) × months since joining (columns), coloured by the
    share of the cohort that bought in that month. ``month_label`` formats a column
    number (``"M{n}"``)."""
    width = max((len(row) for row in retention), default=0)
    cells = [[k, i, _pct(share)] for i, row in enumerate(retention)
             for k, share in enumerate(row)]
    top = max((c[2] for c in cells if c[0] > 0), default=0.0)
    return {
        "tooltip": {"position": "top"},
        "grid": {**GRID, "top": 12, "right": 72},
        "xAxis": {"type": "category", "data": [month_label.format(n=k) for k in range(width)],
                  "splitArea": {"show": True}},
        "yAxis": {"type": "category", "data": list(cohorts), "inverse": True,
                  "splitArea": {"show": True}},
        "visualMap": {"min": 0, "max": max(top, 1.0), "calculable": True, "orient": "vertical",
                      "right": 0, "top": "middle", "itemHeight": 120,
                      "inRange": {"color": HEAT}, "text": ["%", ""], "dimension": 2},
        "series": [{"type": "heatmap", "name": name, "data": cells,
                    "label": {"show": width <= 13, "fontSize": 10},
                    "emphasis": {"itemStyle": {"borderColor": "#17202e", "borderWidth": 1}}}],
    }


@dataclass(frozen=True)
class GridPoint:
    """One cell of the R × FM grid as drawn: ``label`` is the full tooltip text."""

    r_score: int
    fm_score: int
    members: int
    revenue_major: float
    label: str
    short: str


def rfm_grid(points: Sequence[GridPoint], *, axes: tuple[str, str], value_name: str) -> Option:
    """The 5 × 5 RFM grid as a bubble chart: recency score across, frequency-and-money
    score up; each bubble's area is proportional to its members and its colour to their
    revenue over the last 365 days."""
    biggest = max((p.members for p in points), default=0)
    richest = max((p.revenue_major for p in points), default=0.0)

    def size(members: int) -> float:
        return round(6 + 46 * math.sqrt(members / biggest), 1) if biggest else 6.0

    scores = [str(s) for s in range(1, 6)]
    return {
        "tooltip": {"trigger": "item", "formatter": "{b}"},
        "grid": {**GRID, "top": 28, "right": 110},
        "xAxis": {"type": "category", "data": scores, "name": axes[0], "nameLocation": "middle",
                  "nameGap": 28, "splitLine": {"show": True}},
        "yAxis": {"type": "category", "data": scores, "name": axes[1], "nameLocation": "middle",
                  "nameGap": 30, "splitLine": {"show": True}},
        "visualMap": {"min": 0, "max": max(richest, 1.0), "dimension": 3, "orient": "vertical",
                      "right": 0, "top": "middle", "calculable": True, "text": [value_name, ""],
                      "textStyle": {"fontSize": 11},
                      "inRange": {"color": VALUE}, "itemHeight": 120},
        "series": [{"type": "scatter", "name": value_name,
                    "data": [{"name": p.label,
                              "value": [p.r_score - 1, p.fm_score - 1, p.members,
                                        round(p.revenue_major, 2)],
                              "symbolSize": size(p.members),
                              "label": {"show": p.members > 0, "formatter": p.short,
                                        "fontSize": 10, "color": "#17202e",
                                        "position": "bottom", "distance": 2}}
                             for p in points]}],
    }


def lifecycle_funnel(stages: Sequence[tuple[str, int]], *, name: str) -> Option:
    """Members per lifecycle stage, in the lifecycle's order (not sorted by size)."""
    return {
        "tooltip": {"trigger": "item", "formatter": "{b}: {c}"},
        "series": [{"type": "funnel", "name": name, "sort": "none", "gap": 2,
                    "left": "8%", "right": "8%", "top": 12, "bottom": 12, "minSize": "12%",
                    "label": {"show": True, "position": "inside", "formatter": "{b}: {c}"},
                    "data": [{"name": label, "value": members} for label, members in stages]}],
    }


def campaign_uplift(campaigns: Sequence[str], intervals: Sequence[tuple[float, float, float]],
                    *, names: tuple[str, str]) -> Option:
    """Conversion uplift (treatment minus control, percentage points) per campaign as
    bars, with the 95 % interval drawn as an error mark (a box plot whose box is collapsed
    onto the estimate, so only the whiskers and their caps show). ``intervals``:
    (estimate, low, high) as proportions. ``names``: uplift, interval."""
    bars = [_pct(e) for e, _, _ in intervals]
    marks = [[_pct(lo), _pct(e), _pct(e), _pct(e), _pct(hi)] for e, lo, hi in intervals]
    return {
        "tooltip": {"trigger": "item"},
        "legend": {"top": 0},
        "grid": GRID,
        "xAxis": {"type": "category", "data": list(campaigns),
                  "axisLabel": {"interval": 0, "width": 110, "overflow": "truncate"}},
        "yAxis": {"type": "value", "axisLabel": {"formatter": "{value} pt"}},
        "series": [
            {"type": "bar", "name": names[0], "data": bars, "barMaxWidth": 40,
             "itemStyle": {"color": "#0e7a6d", "opacity": 0.8}},
            {"type": "boxplot", "name": names[1], "data": marks, "boxWidth": [8, 18],
             "itemStyle": {"color": "transparent", "borderColor": "#17202e",
                           "borderWidth": 1.5}},
        ],
    }
