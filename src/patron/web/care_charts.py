"""ECharts options of the care pages: the NPS trend and the promoter mix per month.

Plain dicts, like ``web.charts``: labels use ECharts' string templates, never functions.
Figures are rounded to one decimal here, for display only (feedback.rules keeps them
unrounded). A month without answers is a gap (``None``), not a zero: no answers is not a
score of 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from patron.feedback.rules import ScoreSummary
from patron.web.charts import GRID, Option


def _one_decimal(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def nps_trend(months: Sequence[str], by_month: Mapping[str, ScoreSummary], *,
              nps_label: str, csat_label: str) -> Option:
    """NPS (-100..100) and the share of satisfied CSAT answers (0..100) per month, on one
    axis from -100 to 100 with a line at zero (above it, more promoters than detractors)."""
    nps = [_one_decimal(by_month[m].nps) if m in by_month else None for m in months]
    csat = [_one_decimal(by_month[m].csat_percent) if m in by_month else None for m in months]
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": GRID,
        "xAxis": {"type": "category", "data": list(months), "boundaryGap": False},
        "yAxis": {"type": "value", "min": -100, "max": 100},
        "series": [
            {"type": "line", "name": nps_label, "data": nps, "connectNulls": False,
             "showSymbol": True, "symbolSize": 7,
             "markLine": {"silent": True, "symbol": "none", "data": [{"yAxis": 0}],
                          "lineStyle": {"type": "dashed", "color": "#94a3b8"},
                          "label": {"show": False}}},
            {"type": "line", "name": csat_label, "data": csat, "connectNulls": False,
             "showSymbol": True, "symbolSize": 5, "lineStyle": {"type": "dotted"}},
        ],
    }


def nps_mix(months: Sequence[str], by_month: Mapping[str, ScoreSummary], *,
            labels: tuple[str, str, str]) -> Option:
    """How many promoters, passives and detractors answered each month (stacked bars)."""
    def counts(attribute: str) -> list[int]:
        return [getattr(by_month[m], attribute) if m in by_month else 0 for m in months]

    promoters, passives, detractors = labels
    colours = {"promoters": "#16a34a", "passives": "#94a3b8", "detractors": "#dc2626"}
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": GRID,
        "xAxis": {"type": "category", "data": list(months)},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": [{"type": "bar", "name": name, "stack": "answers", "data": counts(key),
                    "itemStyle": {"color": colours[key]}}
                   for key, name in (("promoters", promoters), ("passives", passives),
                                     ("detractors", detractors))],
    }
