"""The dashboard (home page): member search and shortcuts for everyone; for owners and
managers, the retention figures and charts of a store scope and period.

The figures come from ``patron.analytics.dashboard``. Those read from the nightly
snapshot (at-risk members, the RFM grid, the lifecycle funnel) are on the page itself:
a sum over the groups the refresh wrote, cached per snapshot. Those computed from the
sales history (active and new members, repeat and churn rates, revenue shares,
liabilities, the leaky bucket, cohorts, the Pareto curve, campaign uplift) are on the page
too when they cost no history load: the default period of every store or of one store,
which the nightly refresh stores, or any scope already cached that day. Otherwise the
page shows a placeholder that fetches ``/dashboard/history`` (which computes them once)
as soon as it loads, so the page itself never waits for a history load.

Cashiers land here too: they see the search and the shortcuts, never the money figures
(the service refuses them anyway).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from fastapi import Query
from starlette.responses import Response

from patron.analytics import dashboard as figures
from patron.auth.enums import PrincipalKind, Role
from patron.auth.principal import RANK
from patron.core.clock import local_today
from patron.core.errors import PatronError, PermissionDenied
from patron.core.money import minor_digits
from patron.loyalty import service as loyalty
from patron.members import service as members
from patron.web import dashboard_charts as dc
from patron.web.deps import Db, Page, SignedInPage, principal_of
from patron.web.forms import translate_error
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import render

router = web_router()

StoreParam = Annotated[str | None, Query(alias="store", max_length=64)]
FromParam = Annotated[str | None, Query(alias="from", max_length=32)]
ToParam = Annotated[str | None, Query(alias="to", max_length=32)]

SEGMENT_LABELS: dict[str, str] = {
    "champions": N_("Champions"), "loyal": N_("Loyal customers"),
    "potential_loyalist": N_("Potential loyalists"), "new": N_("New customers"),
    "promising": N_("Promising"), "needs_attention": N_("Needs attention"),
    "about_to_sleep": N_("About to sleep"), "at_risk": N_("At risk"),
    "cant_lose": N_("Can't lose them"), "hibernating": N_("Hibernating"),
    "lost": N_("Lost customers"),
}
STAGE_LABELS: dict[str, str] = {
    "new": N_("New"), "growing": N_("Growing"), "mature": N_("Mature"),
    "declining": N_("Declining"), "lapsed": N_("Lapsed"), "lost": N_("Lost"),
}
FILTER_ERROR = N_("Enter a date as YYYY-MM-DD")
STORE_ERROR = N_("Choose one of the stores in the list")


@dataclass
class Filters:
    """The filter form as typed, what it parsed to, and its errors by field."""

    store: str = ""
    first: str = ""
    last: str = ""
    store_id: uuid.UUID | None = None
    first_on: date | None = None
    last_on: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        return {"store": self.store, "from": self.first, "to": self.last}


def _filters(page: Page, store: str | None, first: str | None, last: str | None) -> Filters:
    f = Filters(store=(store or "").strip(), first=(first or "").strip(),
                last=(last or "").strip())
    if f.store:
        try:
            f.store_id = uuid.UUID(f.store)
        except ValueError:
            f.errors["store"] = page.gettext(STORE_ERROR)
    for name, text in (("from", f.first), ("to", f.last)):
        if not text:
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            f.errors[name] = page.gettext(FILTER_ERROR)
            continue
        if name == "from":
            f.first_on = day
        else:
            f.last_on = day
    return f


def _sees_figures(page: Page) -> bool:
    principal = page.principal
    return principal is not None and principal.kind is PrincipalKind.USER and \
        RANK[principal.role] >= RANK[Role.MANAGER]


def _scope(page: Page, f: Filters) -> figures.Scope | None:
    """The checked scope, or None with the problem put on the form (nothing computed)."""
    if f.errors:
        return None
    try:
        return figures.resolve_scope(actor=principal_of(page), clock=page.app.clock,
                                     tz=page.app.settings.default_timezone,
                                     store_id=f.store_id, first_on=f.first_on,
                                     last_on=f.last_on)
    except PermissionDenied as exc:
        if f.store_id is None:
            raise  # not a manager or owner at all: the 403 page
        f.errors["store"] = translate_error(page, exc.message, exc.code)
        return None
    except PatronError as exc:
        field_name = {"first_on": "from", "last_on": "to", "store_id": "store"}.get(
            exc.field or "", "from")
        f.errors[field_name] = translate_error(page, exc.message, exc.code)
        return None


@router.get("/")
def dashboard(page: SignedInPage, session: Db, store: StoreParam = None,
              first: FromParam = None, last: ToParam = None) -> Response:
    """Home: find a member fast and the shortcuts; the figures for owners and managers."""
    principal = principal_of(page)
    settings = page.app.settings
    stores = members.list_stores(session)
    my_stores = [s for s in stores if principal.store_ids and s.id in principal.store_ids]
    context: dict[str, Any] = {"today": local_today(page.app.clock, page.tz.key),
                               "my_stores": my_stores, "figures": False}
    if not _sees_figures(page):
        _rows, member_count = members.search_members(
            session, query=members.MemberQuery(page_size=1), region=settings.default_region)
        return render(page, "dashboard.html", member_count=member_count,
                      store_count=len(stores), **context)
    f = _filters(page, store, first, last)
    choices = stores if principal.all_stores else my_stores
    scope = _scope(page, f)
    context.update(figures=True, filters=f, store_choices=choices, scope=scope)
    if scope is None:
        return render(page, "dashboard.html", status=422, snapshot=None, history=None,
                      snapshot_charts=None, history_charts=None, **context)
    snapshot = figures.cached_snapshot(session, page.app.db, actor=principal, scope=scope)
    rate = loyalty.get_program(session, clock=page.app.clock).points_per_major_redeemed
    history = figures.ready_history(
        session, page.app.db, clock=page.app.clock, actor=principal, scope=scope,
        points_per_major_redeemed=rate,
        minor_per_major=10 ** minor_digits(settings.currency), currency=settings.currency)
    portrait_list = figures.cached_portraits(session, page.app.db, actor=principal,
                                             scope=scope)
    return render(page, "dashboard.html", snapshot=snapshot, history=history,
                  portraits=portrait_list, zh=page.language.startswith("zh"),
                  snapshot_charts=_snapshot_charts(page, snapshot),
                  history_charts=_history_charts(page, history), **context)


@router.get("/dashboard/history")
def dashboard_history(page: SignedInPage, session: Db, store: StoreParam = None,
                      first: FromParam = None, last: ToParam = None) -> Response:
    """The history figures of the dashboard as a fragment (computed once per scope and
    day; the first request of the day waits for the history to load)."""
    principal = principal_of(page)
    f = _filters(page, store, first, last)
    scope = _scope(page, f)
    if scope is None:
        return render(page, "dashboard/history.html", status=422, history=None,
                      history_charts=None, filters=f, scope=None)
    settings = page.app.settings
    rate = loyalty.get_program(session, clock=page.app.clock).points_per_major_redeemed
    session.rollback()  # the history load reads on its own; hold no transaction meanwhile
    history = figures.cached_history(
        page.app.db, clock=page.app.clock, actor=principal, scope=scope,
        points_per_major_redeemed=rate,
        minor_per_major=10 ** minor_digits(settings.currency), currency=settings.currency)
    return render(page, "dashboard/history.html", history=history,
                  history_charts=_history_charts(page, history), filters=f, scope=scope)


# ---------------------------------------------------------------- charts


def _major(page: Page, amount_minor: int) -> float:
    digits: int = minor_digits(page.app.settings.currency)
    return amount_minor * 10.0**-digits


def _snapshot_charts(page: Page, snapshot: figures.SnapshotFigures | None
                     ) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    t, fmt = page.gettext, page.formatter
    points = []
    for cell in snapshot.grid:
        name = t(SEGMENT_LABELS.get(cell.segment, cell.segment))
        label = t(N_("%(segment)s (R %(r)s, FM %(fm)s): %(members)s members, "
                     "%(revenue)s in 365 days"),
                  segment=name, r=cell.r_score, fm=cell.fm_score,
                  members=fmt.number(cell.members), revenue=fmt.money(cell.revenue_365_minor))
        points.append(dc.GridPoint(r_score=cell.r_score, fm_score=cell.fm_score,
                                   members=cell.members,
                                   revenue_major=_major(page, cell.revenue_365_minor),
                                   label=label, short=fmt.number(cell.members)))
    return {
        "rfm": dc.rfm_grid(points,
                           axes=(t(N_("Recency score")), t(N_("Frequency and money score"))),
                           value_name=t(N_("Revenue, 365 days"))),
        "funnel": dc.lifecycle_funnel(
            [(t(STAGE_LABELS.get(g.name, g.name)), g.members) for g in snapshot.stages],
            name=t(N_("Lifecycle stage"))),
    }


def _history_charts(page: Page, history: figures.HistoryFigures | None
                    ) -> dict[str, Any] | None:
    if history is None:
        return None
    t, fmt = page.gettext, page.formatter
    months = [fmt.date(p.starts_on, "yyyy-MM") for p in history.bucket.periods]
    charts: dict[str, Any] = {
        "bucket": dc.leaky_bucket(
            months, new=[p.new for p in history.bucket.periods],
            reactivated=[p.reactivated for p in history.bucket.periods],
            lapsed=[p.lapsed for p in history.bucket.periods],
            names=(t(N_("New")), t(N_("Reactivated")), t(N_("Lapsed")), t(N_("Net change")))),
        "pareto": dc.pareto(
            [(p.member_share, p.revenue_share) for p in history.pareto.curve],
            top_fraction=history.pareto.top_fraction, top_share=history.pareto.top_share,
            names=(t(N_("Share of member revenue")), t(N_("Equal spending")),
                   t(N_("Top {top}%: {share}%")))),
        "cohorts": dc.cohort_heatmap(
            [f"{fmt.date(c.month, 'yyyy-MM')} ({fmt.number(c.size)})"
             for c in history.cohorts.cohorts],
            [list(c.retention) for c in history.cohorts.cohorts],
            month_label=t(N_("M{n}")), name=t(N_("Bought in the month"))),
        "uplift": None,
    }
    measured = [c for c in history.campaigns if c.conversion is not None]
    if measured:
        charts["uplift"] = dc.campaign_uplift(
            [c.name for c in measured],
            [(c.conversion.estimate, c.conversion.low, c.conversion.high)
             for c in measured if c.conversion is not None],
            names=(t(N_("Conversion uplift")), t(N_("95% interval"))))
    return charts
