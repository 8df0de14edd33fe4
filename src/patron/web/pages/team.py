"""Team performance for managers and owners: store and staff leaderboards and a monthly trend.

The figures and their definitions are ``patron.analytics.team``'s; the service decides who
sees which stores (a manager only their own; naming another store is the 403 page). This
page reads the query string (period, store, the metric each leaderboard is sorted by),
calls the service and renders what it returns: bars are SVG rectangles sized by the value
(the pages' CSP allows no inline style), charts are ECharts options built here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.responses import Response

from patron.analytics import team
from patron.analytics.team import StaffRow, StoreRow, TeamReport
from patron.auth.enums import Role
from patron.auth.principal import require_role
from patron.core.clock import local_today
from patron.members import service as members
from patron.members.models import Store
from patron.web import charts
from patron.web.deps import Db, Page, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import render

router = web_router()

FIELDS = frozenset({"from", "to", "store", "sort", "staff_sort"})


@dataclass(frozen=True)
class Metric:
    """A column a leaderboard can be sorted by; ``higher_is_better`` decides the order."""

    key: str
    label: str  # an English msgid
    kind: str  # count, rate, hours, score, points
    higher_is_better: bool = True


STORE_METRICS: tuple[Metric, ...] = (
    Metric("enrolled", N_("Enrolled"), "count"),
    Metric("came_back_rate", N_("Came back within 90 days"), "rate"),
    Metric("repeat_rate", N_("Repeat rate"), "rate"),
    Metric("churn_rate", N_("Churn rate"), "rate", higher_is_better=False),
    Metric("callbacks_done", N_("Callbacks done"), "count"),
    Metric("reach_rate", N_("Reached"), "rate"),
    Metric("complaints_resolved", N_("Complaints resolved"), "count"),
    Metric("sla_rate", N_("Resolved in time"), "rate"),
    Metric("mean_resolution_hours", N_("Hours to resolve"), "hours", higher_is_better=False),
    Metric("csat", N_("CSAT"), "score"),
    Metric("nps", N_("NPS"), "score"),
    Metric("uplift", N_("Campaign uplift"), "points"),
)
STAFF_METRICS: tuple[Metric, ...] = tuple(
    m for m in STORE_METRICS
    if m.key not in ("repeat_rate", "churn_rate", "uplift"))


def metric_value(row: StoreRow | StaffRow, key: str) -> float | None:
    """The figure a metric sorts and draws by (percentages for the survey scores)."""
    if key == "csat":
        return row.surveys.csat_percent
    if key == "nps":
        return row.surveys.nps
    if key == "uplift":
        return row.campaign.conversion_uplift if isinstance(row, StoreRow) else None
    value = getattr(row, key)
    return None if value is None else float(value)


def ranked(rows: Sequence[Any], metric: Metric,
           value: Callable[[Any, str], float | None] = metric_value) -> list[Any]:
    """Best first by ``metric``; rows without a value go last, in their given order."""
    with_value = [r for r in rows if value(r, metric.key) is not None]
    without = [r for r in rows if value(r, metric.key) is None]
    with_value.sort(key=lambda r: value(r, metric.key) or 0.0,
                    reverse=metric.higher_is_better)
    return with_value + without


def with_bars(rows: Sequence[Any], key: str) -> list[tuple[Any, float]]:
    """Each row with its bar: a percentage of the largest absolute value in the column."""
    values = [metric_value(r, key) for r in rows]
    top = max((abs(v) for v in values if v is not None), default=0.0)
    return [(r, abs(v) / top * 100 if top and v is not None else 0.0)
            for r, v in zip(rows, values, strict=True)]


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def trend_charts(page: Page, report: TeamReport) -> tuple[charts.Option, charts.Option]:
    """Rates per month (line, %) and counts per month (bars)."""
    months = [m.month for m in report.trend]
    rates = charts.lines(months, [
        (page.gettext(N_("Came back within 90 days")), [_pct(m.came_back_rate)
                                                        for m in report.trend]),
        (page.gettext(N_("Repeat rate")), [_pct(m.repeat_rate) for m in report.trend]),
        (page.gettext(N_("Churn rate")), [_pct(m.churn_rate) for m in report.trend]),
        (page.gettext(N_("CSAT")), [None if m.csat_percent is None else round(m.csat_percent, 1)
                                    for m in report.trend]),
    ], percent=True)
    rates["grid"] = {**charts.GRID, "right": 40}  # room for the last month's label
    counts = charts.bars(months, [
        (page.gettext(N_("Enrolled")), [m.enrolled for m in report.trend]),
        (page.gettext(N_("Came back")), [m.came_back for m in report.trend]),
        (page.gettext(N_("Callbacks done")), [m.callbacks_done for m in report.trend]),
        (page.gettext(N_("Complaints resolved")), [m.complaints_resolved
                                                   for m in report.trend]),
    ])
    return rates, counts


def _metric(form: Form, name: str, choices: Sequence[Metric], page: Page) -> Metric:
    wanted = form.get(name) or choices[0].key
    for metric in choices:
        if metric.key == wanted:
            return metric
    form.add(name, page.gettext(N_("Choose one of the options")))
    return choices[0]


def _date(form: Form, name: str, page: Page) -> date | None:
    raw = form.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        form.add(name, page.gettext(N_("Enter a date")))
        return None


@router.get("/team")
def team_page(page: SignedInPage, session: Db) -> Response:
    """The leaderboards and the trend over the chosen period and store."""
    principal = principal_of(page)
    require_role(principal, Role.MANAGER, users_only=True)
    query = page.request.query_params
    form = Form(values={k: query.get(k, "").strip()[:64] for k in FIELDS
                        if query.get(k, "").strip()}, fields=FIELDS)
    first_on, last_on = _date(form, "from", page), _date(form, "to", page)
    store_id = form.uuid_value(page, "store")
    sort = _metric(form, "sort", STORE_METRICS, page)
    staff_sort = _metric(form, "staff_sort", STAFF_METRICS, page)
    today = local_today(page.app.clock, page.tz.key)
    report: TeamReport | None = None
    period = attempt(page, form, lambda: team.resolve_period(today, first_on, last_on),
                     aliases={"store_id": "store"})
    if period is not None:
        chosen: list[uuid.UUID] | None = [store_id] if store_id else None
        report = attempt(page, form, lambda: team.team_performance(
            session, principal=principal, clock=page.app.clock, period=period,
            store_ids=chosen), aliases={"store_id": "store"})
    shown = period or team.default_period(today)
    stores: list[Store] = [s for s in members.list_stores(session, include_inactive=True)
                           if principal.can_access_store(s.id)]
    context: dict[str, Any] = {
        "form": form, "report": report, "stores": stores, "first_on": shown.first_on,
        "last_on": shown.last_on, "sort": sort, "staff_sort": staff_sort,
        "store_metrics": STORE_METRICS, "staff_metrics": STAFF_METRICS,
        "metric_value": metric_value,
        "params": {k: form.get(k) for k in FIELDS if form.get(k)},
    }
    if report is not None:
        rates, counts = trend_charts(page, report)
        context |= {"store_rows": with_bars(ranked(report.stores, sort), sort.key),
                    "staff_rows": with_bars(ranked(report.staff, staff_sort), staff_sort.key),
                    "rates_chart": rates, "counts_chart": counts}
    return render(page, "team/report.html", status=200 if form.ok else 422, **context)
