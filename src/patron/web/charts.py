"""ECharts options built on the server: plain dicts the page embeds as JSON.

Pages place a chart with the ``chart`` macro of ``templates/_charts.html``; ``static/charts.js``
draws it. Options use ECharts' string templates for labels (never JS functions), so they
stay data. These helpers hold the house look so pages do not repeat it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Option = dict[str, Any]

GRID: Option = {"left": 48, "right": 16, "top": 36, "bottom": 32, "containLabel": True}


def bars(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | int]]], *,
         stacked: bool = False, horizontal: bool = False) -> Option:
    """A bar chart: one bar series per (name, values), optionally stacked or lying down."""
    category_axis = {"type": "category", "data": list(categories)}
    value_axis: Option = {"type": "value"}
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0} if len(series) > 1 else {"show": False},
        "grid": GRID,
        "xAxis": value_axis if horizontal else category_axis,
        "yAxis": category_axis if horizontal else value_axis,
        "series": [{"type": "bar", "name": name, "data": list(values),
                    **({"stack": "total"} if stacked else {})} for name, values in series],
    }


def lines(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float | int | None]]],
          *, percent: bool = False, area: bool = False) -> Option:
    """A line chart over ``categories`` (usually periods); ``percent`` labels the axis in %."""
    axis_label = {"formatter": "{value}%"} if percent else {}
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0} if len(series) > 1 else {"show": False},
        "grid": GRID,
        "xAxis": {"type": "category", "data": list(categories), "boundaryGap": False},
        "yAxis": {"type": "value", "axisLabel": axis_label},
        "series": [{"type": "line", "name": name, "data": list(values), "smooth": True,
                    "showSymbol": len(categories) <= 24,
                    **({"areaStyle": {"opacity": 0.15}} if area else {})}
                   for name, values in series],
    }
