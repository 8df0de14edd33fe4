"""Business reports: Pareto, cohorts, leaky bucket, repeat rate, churn, liabilities and
retention economics. JSON by default, ``?format=csv`` for a spreadsheet.

For owners and managers (staff users; API keys are refused). Figures about members follow
the members' home store and revenue follows the store of the sale; an owner sees every
store, a manager the stores they work in, and ``store_id`` narrows to one of those.

Each request loads the history it needs through ``patron.analytics.source`` (an in-process
DuckDB copy as of ``to``, the brand's local day) and computes the view there; nothing is
written. Periods are local days ``from`` … ``to``; by default the twelve calendar months
that end with yesterday.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from patron.analytics import economics, source, views
from patron.analytics.economics import EconomicsInputs, RetentionEconomics
from patron.analytics.views import CohortBasis, Grain, Period, StoreIds
from patron.api.deps import AppContext, Ctx, CurrentPrincipal, DbSession
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import local_today
from patron.core.errors import ValidationFailed
from patron.core.money import minor_digits
from patron.loyalty import service as loyalty

router = APIRouter(prefix="/reports", tags=["reports"])

Format = Annotated[Literal["json", "csv"], Query(alias="format",
                                                 description="json (default) or csv")]
FirstOn = Annotated[date | None, Query(alias="from", description="First local day")]
LastOn = Annotated[date | None, Query(alias="to", description="Last local day (default: "
                                                              "yesterday)")]
StoreId = Annotated[uuid.UUID | None, Query(description="One store (default: all you see)")]
LapseDays = Annotated[int, Query(ge=1, le=3660, description="Days without a purchase after "
                                                            "which a member has lapsed")]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}}

# Canonical tables the liabilities report reads (see ``views.points_liability`` and
# ``views.stored_value_liability`` for their columns).
POINTS_LOTS = "points_lots"
WALLET_BALANCES = "wallet_balances"


@dataclasses.dataclass(frozen=True)
class Scope:
    """Who asked, over which local days and stores."""

    period: Period
    store_ids: StoreIds
    tz: str


def _scope(ctx: AppContext, principal: Principal, first_on: date | None,
           last_on: date | None, store_id: uuid.UUID | None) -> Scope:
    require_role(principal, Role.MANAGER, users_only=True)
    tz = ctx.settings.default_timezone
    today = local_today(ctx.clock, tz)
    last = last_on or source.default_as_of(ctx.clock.now(), tz)
    if last > today:
        raise ValidationFailed("a report cannot end after today", "to")
    first = first_on or views.month_start(views.month_index(last) - 11)
    if first > last:
        raise ValidationFailed("the period ends before it starts", "from")
    stores: StoreIds
    if store_id is not None:
        require_store(principal, store_id)
        stores = frozenset({store_id})
    else:
        stores = principal.visible_store_ids()
    return Scope(period=Period(first, last), store_ids=stores, tz=tz)


@contextmanager
def _history(ctx: AppContext, scope: Scope, tables: Sequence[str]) -> Iterator[Any]:
    with source.open_source(ctx.db, as_of=scope.period.last_on, timezone=scope.tz,
                            tables=tables) as src:
        yield src


def _csv(rows: Sequence[dict[str, Any]], name: str, scope: Scope | None) -> Response:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    suffix = f"-{scope.period.first_on}-{scope.period.last_on}" if scope else ""
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}{suffix}.csv"'})


@router.get("/pareto", operation_id="report_pareto", response_model=views.ParetoReport,
            responses=CSV_RESPONSE)
def pareto(ctx: Ctx, principal: CurrentPrincipal, output: Format = "json",
           first_on: FirstOn = None, last_on: LastOn = None, store_id: StoreId = None,
           top_fraction: Annotated[float, Query(gt=0, le=1)] = 0.2,
           points: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    """How concentrated revenue is: the Pareto curve, the top 20 %'s share, walk-ins."""
    scope = _scope(ctx, principal, first_on, last_on, store_id)
    with _history(ctx, scope, ["sales"]) as src:
        report = views.pareto(src.sales, period=scope.period, tz=scope.tz,
                              store_ids=scope.store_ids, top_fraction=top_fraction,
                              points=points)
    return _csv(report.rows(), "pareto", scope) if output == "csv" else report


@router.get("/cohorts", operation_id="report_cohorts", response_model=views.CohortReport,
            responses=CSV_RESPONSE)
def cohorts(ctx: Ctx, principal: CurrentPrincipal, output: Format = "json",
            first_on: FirstOn = None, last_on: LastOn = None, store_id: StoreId = None,
            basis: CohortBasis = CohortBasis.JOINED) -> Any:
    """Monthly cohorts × months since: the share of each cohort buying in each month."""
    scope = _scope(ctx, principal, first_on, last_on, store_id)
    with _history(ctx, scope, ["sales", "members"]) as src:
        report = views.cohort_retention(src.sales, src.members, period=scope.period,
                                        tz=scope.tz, store_ids=scope.store_ids, basis=basis)
    return _csv(report.rows(), "cohorts", scope) if output == "csv" else report


@router.get("/leaky-bucket", operation_id="report_leaky_bucket",
            response_model=views.LeakyBucket, responses=CSV_RESPONSE)
def leaky_bucket(ctx: Ctx, principal: CurrentPrincipal, output: Format = "json",
                 first_on: FirstOn = None, last_on: LastOn = None, store_id: StoreId = None,
                 lapse_days: LapseDays = views.DEFAULT_LAPSE_DAYS,
                 grain: Grain = Grain.MONTH) -> Any:
    """New, returning, reactivated and lapsed members per month, and the net change."""
    scope = _scope(ctx, principal, first_on, last_on, store_id)
    with _history(ctx, scope, ["sales", "members"]) as src:
        report = views.leaky_bucket(src.sales, src.members, period=scope.period, tz=scope.tz,
                                    store_ids=scope.store_ids, lapse_days=lapse_days,
                                    grain=grain)
    return _csv(report.rows(), "leaky-bucket", scope) if output == "csv" else report


@router.get("/repeat-rate", operation_id="report_repeat_rate",
            response_model=views.RepeatRate, responses=CSV_RESPONSE)
def repeat_rate(ctx: Ctx, principal: CurrentPrincipal, output: Format = "json",
                first_on: FirstOn = None, last_on: LastOn = None,
                store_id: StoreId = None) -> Any:
    """The share of buying members who bought on at least two days in the period."""
    scope = _scope(ctx, principal, first_on, last_on, store_id)
    with _history(ctx, scope, ["sales", "members"]) as src:
        report = views.repeat_rate(src.sales, src.members, period=scope.period, tz=scope.tz,
                                   store_ids=scope.store_ids)
    if output == "csv":
        return _csv([{"first_on": report.period.first_on, "last_on": report.period.last_on,
                      "purchasers": report.purchasers, "repeaters": report.repeaters,
                      "rate": report.rate}], "repeat-rate", scope)
    return report


@dataclasses.dataclass(frozen=True)
class ChurnReport:
    period: Period
    grain: Grain
    lapse_days: int
    periods: tuple[views.ChurnPeriod, ...]


@router.get("/churn", operation_id="report_churn", response_model=ChurnReport,
            responses=CSV_RESPONSE)
def churn(ctx: Ctx, principal: CurrentPrincipal, output: Format = "json",
          first_on: FirstOn = None, last_on: LastOn = None, store_id: StoreId = None,
          lapse_days: LapseDays = views.DEFAULT_LAPSE_DAYS,
          grain: Grain = Grain.MONTH) -> Any:
    """Churn rate per month (quarter, year): lapsed among the members active at its start."""
    scope = _scope(ctx, principal, first_on, last_on, store_id)
    with _history(ctx, scope, ["sales", "members"]) as src:
        rows = views.churn(src.sales, src.members, period=scope.period, tz=scope.tz,
                           store_ids=scope.store_ids, lapse_days=lapse_days, grain=grain)
    if output == "csv":
        return _csv([dataclasses.asdict(r) for r in rows], "churn", scope)
    return ChurnReport(period=scope.period, grain=grain, lapse_days=lapse_days, periods=rows)


@dataclasses.dataclass(frozen=True)
class LiabilitiesReport:
    points: views.PointsLiability
    stored_value: views.StoredValueLiability


@dataclasses.dataclass(frozen=True)
class TierMigrationReport:
    """Members by tier at the period's start × at its end (``matrix`` rows: start tiers,
    columns: end tiers, both in ``tiers`` order, lowest first); ``flows`` also hold members
    who joined during the period (``from_tier`` null) or held no tier."""

    period: Period
    tiers: tuple[str, ...]
    flows: tuple[views.TierFlow, ...]
    matrix: list[list[int]]


@router.get("/tier-migration", operation_id="report_tier_migration",
            response_model=TierMigrationReport, responses=CSV_RESPONSE)
def tier_migration(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   output: Format = "json", first_on: FirstOn = None, last_on: LastOn = None,
                   store_id: StoreId = None) -> Any:
    """Where the members of each tier at the period's start stood at its end: upgrades,
    downgrades and who stayed (members of the stores you see, by home store)."""
    scope = _scope(ctx, principal, first_on, last_on, store_id)
    ladder = [t.code for t in loyalty.list_tiers(session)]
    with _history(ctx, scope, ["members", "tier_changes"]) as src:
        report = views.tier_migration(src.table("tier_changes"), src.members,
                                      period=scope.period, tz=scope.tz,
                                      store_ids=scope.store_ids, tiers=ladder)
    if output == "csv":
        return _csv(report.rows(), "tier-migration", scope)
    return TierMigrationReport(period=report.period, tiers=report.tiers, flows=report.flows,
                               matrix=report.matrix())


@router.get("/liabilities", operation_id="report_liabilities",
            response_model=LiabilitiesReport, responses=CSV_RESPONSE)
def liabilities(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                output: Format = "json", last_on: LastOn = None, store_id: StoreId = None,
                expiring_within_days: Annotated[int, Query(ge=1, le=3660)] = 90) -> Any:
    """What the shop owes members at the end of ``to``: points at their redemption value
    (and what expires soon) and stored value (principal and bonus).

    Stored value is exact at the end of ``to`` (each wallet's last entry before it). Points
    are the lots earned by then with what is left of them *now*: a lot spent or expired
    after ``to`` counts as spent, so for a past ``to`` the points figure can only be lower
    than it was on that day; for yesterday (the default) the two differ by today's sales."""
    scope = _scope(ctx, principal, None, last_on, store_id)
    program = loyalty.get_program(session, clock=ctx.clock)
    with _history(ctx, scope, ["members", POINTS_LOTS, WALLET_BALANCES]) as src:
        points = views.points_liability(
            src.table(POINTS_LOTS), as_of=src.cutoff,
            points_per_major_redeemed=program.points_per_major_redeemed,
            minor_per_major=10 ** minor_digits(ctx.settings.currency),
            expiring_within_days=expiring_within_days, members=src.members,
            store_ids=scope.store_ids)
        stored = views.stored_value_liability(src.table(WALLET_BALANCES), members=src.members,
                                              store_ids=scope.store_ids)
    report = LiabilitiesReport(points=points, stored_value=stored)
    if output == "csv":
        row = {f"points_{k}": v for k, v in dataclasses.asdict(points).items()}
        row |= {f"stored_value_{k}": v for k, v in dataclasses.asdict(stored).items()}
        return _csv([row], "liabilities", None)
    return report


@dataclasses.dataclass(frozen=True)
class EconomicsReport:
    """The calculator's answer and, when measured, the figures it started from."""

    measured: economics.BaseMeasure | None
    economics: RetentionEconomics


@router.get("/retention-economics", operation_id="report_retention_economics",
            response_model=EconomicsReport, responses=CSV_RESPONSE)
def retention_economics(
    ctx: Ctx, principal: CurrentPrincipal, output: Format = "json",
    last_on: LastOn = None, store_id: StoreId = None,
    retention_rate: Annotated[float | None, Query(
        ge=0, le=1, description="Annual retention (default: measured from the history)")] = None,
    annual_margin_minor: Annotated[int | None, Query(
        ge=0, description="Margin per customer-year (default: measured revenue per "
                          "member-year × margin_pct)")] = None,
    margin_pct: Annotated[float | None, Query(
        gt=0, le=100, description="Margin as a percentage of net revenue")] = None,
    acquisition_cost_minor: Annotated[int, Query(ge=0)] = 0,
    retention_cost_minor: Annotated[int | None, Query(gt=0)] = None,
    discount_rate: Annotated[float, Query(ge=0, lt=1)] = 0.1,
    years: Annotated[int, Query(ge=1, le=economics.MAX_YEARS)] = 5,
    cohort_size: Annotated[int, Query(ge=1)] = 1000,
    purchases_per_year: Annotated[float | None, Query(gt=0)] = None,
) -> Any:
    """Customer equity at today's retention and at +1 … +10 points, and what +5 is worth.

    Whatever is not given is measured from the sales history over the year to ``to``
    (retention: members active the year before who were active again; margin: net
    revenue per active member-year × ``margin_pct``; purchase days per member-year).
    """
    scope = _scope(ctx, principal, None, last_on, store_id)
    measured = None
    if retention_rate is None or annual_margin_minor is None or purchases_per_year is None:
        if annual_margin_minor is None and margin_pct is None:
            raise ValidationFailed("give annual_margin_minor, or margin_pct to apply to the "
                                   "measured revenue per member-year", "margin_pct")
        with _history(ctx, scope, ["sales", "members"]) as src:
            measured = economics.measure_base(src.sales, as_of=scope.period.last_on,
                                              tz=scope.tz, members=src.members,
                                              store_ids=scope.store_ids)
    rate = retention_rate
    if rate is None:
        rate = measured.retention.rate if measured else None
        if rate is None:
            raise ValidationFailed("nobody bought in the year before last to measure "
                                   "retention from: give retention_rate", "retention_rate")
    margin = annual_margin_minor
    if margin is None:
        revenue = measured.revenue_per_member_year_minor if measured else None
        if revenue is None or margin_pct is None:
            raise ValidationFailed("no member bought in the last year to measure the margin "
                                   "from: give annual_margin_minor", "annual_margin_minor")
        margin = economics.round_minor(revenue * margin_pct / 100)
    frequency = purchases_per_year
    if frequency is None and measured is not None:
        frequency = measured.purchases_per_year
    result = economics.project(EconomicsInputs(
        retention_rate=rate, annual_margin_minor=margin,
        acquisition_cost_minor=acquisition_cost_minor, discount_rate=discount_rate,
        years=years, cohort_size=cohort_size, purchases_per_year=frequency,
        retention_cost_minor=retention_cost_minor))
    if output == "csv":
        return _csv([{"points": s.points, "retention_rate": s.retention_rate,
                      "clv_minor": s.clv_minor, "customer_equity_minor": s.customer_equity_minor,
                      "expected_years": s.expected_years,
                      "expected_purchases": s.expected_purchases, "uplift_pct": s.uplift_pct}
                     for s in result.scenarios], "retention-economics", None)
    return EconomicsReport(measured=measured, economics=result)

