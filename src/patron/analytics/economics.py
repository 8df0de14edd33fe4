"""Retention economics: what a few more points of retention are worth to this brand.

Design overview
---------------
The calculator is the textbook geometric-retention model of customer value (Gupta &
Lehmann, "Customers as Assets", *Journal of Interactive Marketing* 17(1), 2003; the
"5 % more retention, 25-95 % more profit" argument of Reichheld & Sasser, *HBR* 1990):

* a cohort of ``C`` customers is acquired at ``acquisition_cost`` each;
* each year a customer still with the brand yields the margin ``m`` (contribution after
  the cost of goods and of serving them, in minor units); year 1 is the year of
  acquisition, and its margin is certain;
* at each year's end a share ``r`` (the annual retention rate) stays, so a customer is
  still there in year t + 1 with probability r^t;
* money of year t + 1 is discounted by (1 + d)^t, margins being counted at the start of
  the year.

    CLV(r) = Σ_{t=0}^{N-1} m · r^t / (1 + d)^t  −  acquisition_cost
    customer equity = C · CLV(r)

(as N → ∞ the sum tends to m (1 + d) / (1 + d − r), Gupta & Lehmann's margin multiple).
The same cohort is projected at the measured retention and at +1 … +10 points; the profit
uplift of +k points is (equity(r + k) − equity(r)) / equity(r). Retention cannot exceed
100 %, so scenarios that would are left out.

``r`` should be the brand's own: ``measure_retention`` computes it from the sales history
as the share of members active in the year before the last who were active again in the
last year (a purchase is activity), and ``measure_base`` adds the margin basis (net
revenue and purchase days per active member-year) so the calculator can start from
measured figures.

Units: money inputs are integer minor units; the projection runs in float64 (it is an
estimate, not a ledger) and amounts are rounded once, half away from zero, when the
report is built. Rates are fractions (0.8 = 80 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import ibis
import numpy as np
from numpy.typing import NDArray

from patron.analytics import views
from patron.analytics.views import StoreIds
from patron.core.errors import FieldProblem, ValidationFailed
from patron.core.money import divide_round_half_up

MAX_POINTS = 10
HEADLINE_POINTS = 5
MAX_YEARS = 100


@dataclass(frozen=True)
class EconomicsInputs:
    """What the owner knows or measured.

    ``annual_margin_minor`` is the average margin per customer-year (minor units), already
    net of what it costs to serve and retain the customer. ``purchases_per_year`` is only
    used to report expected purchases; ``retention_cost_minor`` (a year's spending to keep
    one existing customer) only for the "a new customer costs k × an old one" ratio.
    """

    retention_rate: float
    annual_margin_minor: int
    acquisition_cost_minor: int = 0
    discount_rate: float = 0.1
    years: int = 5
    cohort_size: int = 1000
    purchases_per_year: float | None = None
    retention_cost_minor: int | None = None


@dataclass(frozen=True)
class YearProjection:
    """One year of a cohort's life: year 1 is the year of acquisition."""

    year: int
    customers: float
    profit_minor: int
    discounted_profit_minor: int
    cumulative_discounted_profit_minor: int


@dataclass(frozen=True)
class Scenario:
    """The cohort at one retention rate: ``points`` above the measured one (0 = as is)."""

    points: int
    retention_rate: float
    clv_minor: int
    customer_equity_minor: int
    expected_years: float
    expected_purchases: float | None
    uplift_pct: float | None
    years: tuple[YearProjection, ...]


@dataclass(frozen=True)
class RetentionEconomics:
    """Every scenario, the headline uplift and the acquisition/retention cost ratio.

    ``uplift_5_points_pct`` is the percentage change in customer equity when retention
    rises by 5 points ("cutting churn by 5 points raises profit by X %"); None when that
    would exceed 100 % retention or when equity at today's retention is not positive (a
    percentage of a loss says nothing).
    """

    inputs: EconomicsInputs
    scenarios: tuple[Scenario, ...]
    uplift_5_points_pct: float | None
    acquisition_to_retention_ratio: float | None


def validate(inputs: EconomicsInputs) -> None:
    """Refuse impossible inputs, naming every offending field at once."""
    problems = _model_problems(retention_rate=inputs.retention_rate,
                               annual_margin_minor=inputs.annual_margin_minor,
                               acquisition_cost_minor=inputs.acquisition_cost_minor,
                               discount_rate=inputs.discount_rate, years=inputs.years)
    if inputs.cohort_size < 1:
        problems.append(FieldProblem("cohort_size", "a cohort has at least one customer"))
    if inputs.purchases_per_year is not None and not (
            math.isfinite(inputs.purchases_per_year) and inputs.purchases_per_year > 0):
        problems.append(FieldProblem("purchases_per_year",
                                     "the purchase frequency must be a positive number"))
    if inputs.retention_cost_minor is not None and inputs.retention_cost_minor <= 0:
        problems.append(FieldProblem("retention_cost_minor",
                                     "the cost of retaining a customer must be positive"))
    _raise(problems)


def _model_problems(*, retention_rate: float, annual_margin_minor: float,
                    acquisition_cost_minor: float, discount_rate: float,
                    years: int) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if not (math.isfinite(retention_rate) and 0.0 <= retention_rate <= 1.0):
        problems.append(FieldProblem("retention_rate",
                                     "the retention rate is a share between 0 and 1"))
    if not (math.isfinite(annual_margin_minor) and annual_margin_minor >= 0):
        problems.append(FieldProblem("annual_margin_minor",
                                     "the margin per customer-year cannot be negative"))
    if not (math.isfinite(acquisition_cost_minor) and acquisition_cost_minor >= 0):
        problems.append(FieldProblem("acquisition_cost_minor",
                                     "the acquisition cost cannot be negative"))
    if not (math.isfinite(discount_rate) and 0.0 <= discount_rate < 1.0):
        problems.append(FieldProblem("discount_rate",
                                     "the annual discount rate is a share between 0 and 1"))
    if not 1 <= years <= MAX_YEARS:
        problems.append(FieldProblem("years", f"the horizon is between 1 and {MAX_YEARS} years"))
    return problems


def _raise(problems: list[FieldProblem]) -> None:
    if problems:
        raise ValidationFailed(problems[0].message, problems[0].field, problems=problems)


def survival(retention_rate: float, years: int) -> NDArray[np.float64]:
    """Share of the cohort still there in years 1..N: r^0, r^1, …, r^(N-1)."""
    return np.asarray(retention_rate ** np.arange(years, dtype=np.float64), dtype=np.float64)


def discount_factors(discount_rate: float, years: int) -> NDArray[np.float64]:
    """1 / (1 + d)^t for years 1..N (t = 0..N-1): year 1's margin is not discounted."""
    return np.asarray((1.0 + discount_rate) ** -np.arange(years, dtype=np.float64),
                      dtype=np.float64)


def customer_lifetime_value(*, annual_margin_minor: float, retention_rate: float,
                            discount_rate: float, years: int,
                            acquisition_cost_minor: float = 0.0) -> float:
    """Σ_{t=0}^{N-1} m r^t / (1+d)^t − acquisition cost, unrounded (minor units)."""
    _raise(_model_problems(retention_rate=retention_rate,
                           annual_margin_minor=annual_margin_minor,
                           acquisition_cost_minor=acquisition_cost_minor,
                           discount_rate=discount_rate, years=years))
    value = annual_margin_minor * float(
        survival(retention_rate, years) @ discount_factors(discount_rate, years))
    return value - acquisition_cost_minor


def project(inputs: EconomicsInputs) -> RetentionEconomics:
    """The cohort at the measured retention and at +1 … +10 points (where ≤ 100 %)."""
    validate(inputs)
    base_equity: float | None = None
    scenarios: list[Scenario] = []
    discount = discount_factors(inputs.discount_rate, inputs.years)
    for points in range(MAX_POINTS + 1):
        # Work in whole hundredths so 0.8 + 5 points is exactly 0.85, not 0.8500000000000001.
        rate = round(inputs.retention_rate + points / 100, 12)
        if rate > 1.0:
            break
        alive = survival(rate, inputs.years)
        profit = inputs.cohort_size * inputs.annual_margin_minor * alive
        discounted = profit * discount
        cumulative = np.cumsum(discounted) - inputs.cohort_size * inputs.acquisition_cost_minor
        equity = float(cumulative[-1])
        if points == 0:
            base_equity = equity
        uplift = (None if base_equity is None or base_equity <= 0
                  else (equity - base_equity) / base_equity * 100.0)
        expected_years = float(alive.sum())
        scenarios.append(Scenario(
            points=points, retention_rate=rate,
            clv_minor=round_minor(equity / inputs.cohort_size),
            customer_equity_minor=round_minor(equity),
            expected_years=expected_years,
            expected_purchases=(None if inputs.purchases_per_year is None
                                else expected_years * inputs.purchases_per_year),
            uplift_pct=uplift,
            years=tuple(
                YearProjection(year=t + 1, customers=float(inputs.cohort_size * alive[t]),
                               profit_minor=round_minor(float(profit[t])),
                               discounted_profit_minor=round_minor(float(discounted[t])),
                               cumulative_discounted_profit_minor=round_minor(
                                   float(cumulative[t])))
                for t in range(inputs.years)),
        ))
    headline = next((s.uplift_pct for s in scenarios if s.points == HEADLINE_POINTS), None)
    ratio = (None if inputs.retention_cost_minor is None
             else inputs.acquisition_cost_minor / inputs.retention_cost_minor)
    return RetentionEconomics(inputs=inputs, scenarios=tuple(scenarios),
                              uplift_5_points_pct=headline,
                              acquisition_to_retention_ratio=ratio)


def acquisition_to_retention_ratio(*, acquisition_cost_minor: int,
                                   retention_cost_minor: int) -> float:
    """How many times more a new customer costs than keeping an existing one."""
    if acquisition_cost_minor < 0:
        raise ValidationFailed("the acquisition cost cannot be negative",
                               "acquisition_cost_minor")
    if retention_cost_minor <= 0:
        raise ValidationFailed("the cost of retaining a customer must be positive",
                               "retention_cost_minor")
    return acquisition_cost_minor / retention_cost_minor


def round_minor(value: float) -> int:
    """Round a float amount to whole minor units, halves away from zero (core/money's rule)."""
    return int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# ---------------------------------------------------------------------------------------
# Measured inputs, from the canonical sales history (Ibis: DuckDB today, Spark later).


@dataclass(frozen=True)
class RetentionMeasure:
    """Members active in the year before last and how many were active again last year.

    With ``as_of`` the last local day of history: last year is the 365 or 366 days
    (as_of − 1 year, as_of], the year before is (as_of − 2 years, as_of − 1 year]. Active =
    at least one purchase (a sale with a positive net, views' convention). ``rate`` is
    None when nobody was active in the earlier year.
    """

    as_of: date
    previous_year_active: int
    last_year_active: int
    retained: int
    rate: float | None


@dataclass(frozen=True)
class BaseMeasure:
    """The measured starting point of the calculator, over the last year to ``as_of``.

    ``revenue_per_member_year_minor`` is net revenue (after refunds) per member active in
    the last year; multiply by the margin share to get ``annual_margin_minor``.
    ``purchases_per_year`` counts purchase days (several sales on one day are one visit).
    """

    retention: RetentionMeasure
    active_members: int
    revenue_per_member_year_minor: int | None
    purchases_per_year: float | None


def measure_retention(sales: ibis.Table, *, as_of: date, tz: str = "UTC",
                      members: ibis.Table | None = None,
                      store_ids: StoreIds = None) -> RetentionMeasure:
    """The brand's annual retention: active in year t−1 and again in year t, over year t−1.

    ``sales`` is the canonical table; walk-ins are ignored. With ``store_ids``, only
    members whose home store is one of them count (needs ``members``); their purchases
    count at any store.
    """
    a, b, c = _year_bounds(as_of)
    period = views.Period(a + timedelta(days=1), c)
    days = views.purchase_days(views.sales_in(sales, period, tz), members, store_ids,
                               tz=tz, around=period)
    split = views.day_number(b)
    per_member = days.group_by("member_id").aggregate(
        before=(days.day <= split).any(), after=(days.day > split).any())
    counts = _one_row(per_member.aggregate(
        previous_year_active=per_member.before.cast("int64").sum(),
        last_year_active=per_member.after.cast("int64").sum(),
        retained=(per_member.before & per_member.after).cast("int64").sum(),
    ))
    previous, retained = _int(counts.get("previous_year_active")), _int(counts.get("retained"))
    return RetentionMeasure(as_of=as_of, previous_year_active=previous,
                            last_year_active=_int(counts.get("last_year_active")),
                            retained=retained,
                            rate=retained / previous if previous else None)


def measure_base(sales: ibis.Table, *, as_of: date, tz: str = "UTC",
                 members: ibis.Table | None = None, store_ids: StoreIds = None) -> BaseMeasure:
    """Retention plus revenue and purchase days per active member over the last year."""
    retention = measure_retention(sales, as_of=as_of, tz=tz, members=members,
                                  store_ids=store_ids)
    _, b, c = _year_bounds(as_of)
    period = views.Period(b + timedelta(days=1), c)
    year = views.member_purchases(views.sales_in(sales, period, tz), members, store_ids)
    day = views.sale_day(year, tz, around=period)
    per_member = year.group_by("member_id").aggregate(revenue=year.net_minor.sum(),
                                                      days=day.nunique())
    totals = _one_row(per_member.aggregate(members=per_member.count(),
                                           revenue=per_member.revenue.sum(),
                                           days=per_member.days.sum()))
    n = _int(totals.get("members"))
    if n == 0:
        return BaseMeasure(retention=retention, active_members=0,
                           revenue_per_member_year_minor=None, purchases_per_year=None)
    return BaseMeasure(
        retention=retention, active_members=n,
        revenue_per_member_year_minor=divide_round_half_up(_int(totals.get("revenue")), n),
        purchases_per_year=_int(totals.get("days")) / n)


def _one_row(table: ibis.Table) -> dict[str, object]:
    rows: list[dict[str, object]] = table.to_pyarrow().to_pylist()
    return rows[0] if rows else {}


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float | Decimal) else 0


def _year_bounds(as_of: date) -> tuple[date, date, date]:
    """(as_of − 2 years, as_of − 1 year, as_of): the years are (a, b] and (b, c]."""
    return _years_before(as_of, 2), _years_before(as_of, 1), as_of


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)
